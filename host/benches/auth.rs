//! `cargo bench -p comfyume --bench auth`: what a login costs with and
//! without the verified-credential cache.
//!
//! One user in a real users file, hashed with the production parameters
//! (argon2id defaults). **full**: the cache is cleared before every check,
//! so each one is a full argon2id verification (what every request would
//! pay without the cache). **cached**: the same header again, the common
//! case of a browser re-sending its credentials. Both go through
//! `Authenticator::verify_blocking`, header parsing and rate-limiter check
//! included; the ratio is the cache's saving per request.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use comfyume::auth::{Authenticator, Role, UsersFile, hash_password};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("tempdir");
    let hash = hash_password("bench-password", &argon2::Params::default()).expect("hash");
    UsersFile::update(data.path(), |f| f.add("ada", Role::Attendee, hash)).expect("users file");
    let auth = Authenticator::new(data.path()).expect("authenticator");
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ada:bench-password")
    );
    let client = IpAddr::from([127, 0, 0, 1]);

    let mut group = c.benchmark_group("login");
    group.bench_function("cached", |b| {
        b.iter(|| black_box(auth.verify_blocking(Some(&header), client)).expect("login"))
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("full", |b| {
        b.iter(|| {
            auth.clear_cache();
            black_box(auth.verify_blocking(Some(&header), client)).expect("login")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
