//! TLS for outgoing HTTPS requests: rustls with the `ring` crypto provider.
//!
//! Policy: reqwest is built with `rustls-no-provider` (the default aws-lc
//! provider needs cmake to build), so a process must install a provider
//! before it builds its first `reqwest::Client`, or reqwest panics. Every
//! place that builds a client calls [`install_provider`] first; it is cheap
//! and idempotent. Certificates are checked against the platform's roots
//! (`rustls-platform-verifier`, i.e. `/etc/ssl/certs` on Linux).

/// Installs ring as the process-wide rustls provider, once. A provider that
/// is already installed (by us or by a dependency) is kept.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider won the race: that one is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
