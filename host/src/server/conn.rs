//! Accepting connections with limits: how long a client may take to send
//! its request head, how long a kept-alive connection may sit idle, how
//! many connections one address may hold open.
//!
//! Policy: `axum::serve` has no timer, so a client that opens a connection
//! and sends nothing, or a header a byte a minute, held it forever (500 of
//! each were held for 30–40 s in a test, and would have been held longer).
//! Here hyper runs with a timer: the request head must arrive within
//! `server.header_timeout_secs`, which also bounds how long an idle
//! kept-alive connection waits for its next request (hyper starts the same
//! timer when it waits for a next head). A body that stops arriving is the
//! job of the body timeout layer ([`super::limits`]). Past
//! `server.max_connections_per_address` open connections from one address
//! (trusted proxies exempt: everybody is behind them), a new connection is
//! closed at once. Websockets, once upgraded, are not HTTP any more and
//! keep their connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

/// The connection limits, from `[server]`.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// For the request head, and for an idle kept-alive connection.
    pub header_timeout: Duration,
    /// Open connections per client address.
    pub per_address: usize,
    /// Addresses exempt from `per_address` (the trusted proxies).
    pub exempt: Vec<IpAddr>,
}

/// Open connections per address, counted down when a connection ends.
#[derive(Default)]
struct Open(Mutex<HashMap<IpAddr, usize>>);

struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

impl Open {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            open: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the open
/// connections finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let open = Arc::new(Open::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.changed() => break,
        };
        let max = if limits.exempt.contains(&peer.ip()) {
            usize::MAX
        } else {
            limits.per_address
        };
        // TCP_NODELAY: see [`super::no_delay`] (Nagle against delayed ACK).
        super::set_no_delay(&mut stream);
        let Some(slot) = open.take(peer.ip(), max) else {
            tracing::info!(address = %peer.ip(), "connection refused: too many open from this address");
            drop(stream);
            continue;
        };
        connection(stream, peer, app.clone(), &limits, slot, stop_rx.clone());
    }
}

fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &ConnLimits,
    slot: Slot,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = app.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        },
    );
    let service = TowerToHyperService::new(service);
    // HTTP/1.1 only, as `axum::serve` with this host's features: hyper's
    // own builder, not the auto one, whose version sniffing waits for the
    // first bytes without a timer (a silent connection would stay open).
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::spawn(async move {
        let _slot = slot;
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                changed = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    if changed.is_err() {
                        // The server is gone: just finish this connection.
                        let _ = connection.as_mut().await;
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_address_and_come_back() {
        let open = Arc::new(Open::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.take(a, 2).expect("1");
        let _second = open.take(a, 2).expect("2");
        assert!(open.take(a, 2).is_none());
        assert!(open.take(b, 2).is_some());
        drop(first);
        assert!(open.take(a, 2).is_some());
    }
}
