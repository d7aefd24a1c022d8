//! Connections that send nothing, or too many from one address, do not
//! hold the host: served as `comfyume serve` serves (`server::conn`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::attendee::repo;

async fn serve(header_timeout: Duration, per_address: usize) -> (tempfile::TempDir, SocketAddr) {
    comfyume::tls::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = comfyume::config::Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    config.frontend.auto_install = false;
    config.attendees.templates_dir = repo().join("workflows/ui");
    let host = comfyume::server::build(config).await.expect("host");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = comfyume::server::conn::ConnLimits {
        header_timeout,
        per_address,
        exempt: Vec::new(),
    };
    tokio::spawn(comfyume::server::conn::serve(
        listener,
        host.app,
        limits,
        std::future::pending(),
    ));
    (dir, addr)
}

/// Reads until the server closes; true if it did within `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed() {
    let (_dir, addr) = serve(Duration::from_secs(1), 64).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    for (name, stream) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(10)).await,
            "{name} was kept open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let (_dir, addr) = serve(Duration::from_secs(30), 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).await.expect("answered");
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(stream);
    }
    let mut fourth = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = fourth
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(closed_within(&mut fourth, Duration::from_secs(5)).await);
    // Once one closes, a new connection is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = tokio::net::TcpStream::connect(addr).await.expect("connect");
    again
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 12];
    again.read_exact(&mut buf).await.expect("answered");
    assert_eq!(&buf, b"HTTP/1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_every_cap_is_refused_at_once_in_json() {
    let (_dir, addr) = serve(Duration::from_secs(30), 64).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"POST /api/jobs/cancel HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\n{",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("application/json"), "{text}");
}
