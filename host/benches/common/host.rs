//! What the load benchmarks share: a `comfyume serve` of its own, started
//! from a config file in a temporary data folder, killed when dropped, and
//! its resident memory read from `/proc`.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running host; killed (and reaped) on drop.
pub struct Host {
    pub child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `binary serve --config <data>/comfyume.toml` with `config` written
/// there, and returns once it listens on `port`.
pub fn start(binary: &Path, data: tempfile::TempDir, port: u16, config: &str) -> Host {
    let file = data.path().join("comfyume.toml");
    std::fs::write(&file, config).expect("config");
    let child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&file)
        .env("COMFYUME_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("comfyume serve");
    let host = Host {
        child,
        port,
        _data: data,
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    host
}

/// The process's `VmRSS`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let mut status = String::new();
    std::fs::File::open(format!("/proc/{pid}/status"))
        .and_then(|mut f| f.read_to_string(&mut status))
        .expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
