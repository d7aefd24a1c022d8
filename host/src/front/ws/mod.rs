//! `/ws`: the editor's websocket, carrying only the caller's own events.
//!
//! Policy:
//! - The upgrade is behind the login like every route; a browser sends its
//!   cached Basic credentials with it, so there is no second prompt.
//! - Each socket gets its own `sid` (the editor's `clientId` when it sent a
//!   plain one). It answers the editor's `feature_flags` with ours, and
//!   sends `status` with the caller's unfinished jobs.
//! - Events come from the job store's change feed, which every host sees
//!   (Redis pub/sub when hosts share a Redis), so an attendee connected to
//!   one host sees the progress of a job dispatched by another. Each socket
//!   keeps only its user's events: the filter is on the stored owner, not
//!   on anything the browser sent.
//! - A socket that falls behind the feed (a slow browser) skips to the
//!   current `status` instead of buffering without bound.
//! - Queue positions come from [`position`] as a `comfyume.queue` message
//!   that the editor extension `queue.js` shows as a badge.
//! - A socket passed the login once, so it re-checks its account whenever
//!   the accounts change (an operator's edit, the users file reloaded) and
//!   every [`RECHECK`] (an edit by the command line nobody's request has
//!   noticed yet): a disabled or removed account's sockets are closed
//!   (code 1008) and stop carrying its events.

pub mod messages;
pub mod position;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Front;
use crate::auth::Identity;
use crate::front::Caller;
use crate::queue::{JobEvent, Requester};
use messages::Teller;

/// The largest message the editor may send (it sends only small JSON).
const MAX_INCOMING: usize = 64 * 1024;

/// How often an open socket re-checks its account without being told.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The websocket route.
pub fn router() -> Router<Arc<Front>> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Deserialize)]
struct WsQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

async fn upgrade(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    Query(query): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let sid = query
        .client_id
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade
        .max_message_size(MAX_INCOMING)
        // The editor's messages are small and ours are sent one at a time:
        // 4 KiB buffers instead of tungstenite's 128 KiB ones are most of
        // what a thousand idle sockets cost (see docs/benchmarks.md).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .on_upgrade(move |socket| async move {
            let span = tracing::info_span!("ws", user = %user.name, sid = %sid);
            tracing::Instrument::instrument(talk(front, user, sid, socket), span).await
        })
}

fn text(kind: &str, data: Value) -> Message {
    Message::Text(Utf8Bytes::from(
        json!({"type": kind, "data": data}).to_string(),
    ))
}

/// The queue message for `user`: their waiting jobs, best placed first.
fn queue_message(spots: &position::Spots, user: &str) -> Message {
    let mine = spots.get(user).cloned().unwrap_or_default();
    text("comfyume.queue", json!({ "jobs": mine }))
}

async fn talk(front: Arc<Front>, user: Identity, sid: String, mut socket: WebSocket) {
    // Subscribe before the first status so nothing falls between them.
    let mut events = front.queue.events();
    let mut spots = front.positions.subscribe();
    let remaining = super::jobs::remaining(&front, &user.name)
        .await
        .unwrap_or(0);
    let hello = text(
        "status",
        json!({"status": {"exec_info": {"queue_remaining": remaining}}, "sid": sid}),
    );
    if socket.send(hello).await.is_err() {
        return;
    }
    let mut last_spots = Value::Null;
    let mut teller = Teller::default();
    tracing::debug!("socket open");
    front.socket_opened(&user.name, 1);
    relay(
        &front,
        &user,
        &mut socket,
        &mut events,
        &mut spots,
        &mut last_spots,
        &mut teller,
    )
    .await;
    front.socket_opened(&user.name, -1);
    tracing::debug!("socket closed");
}

/// Forwards until the socket or the feed closes.
async fn relay(
    front: &Front,
    user: &Identity,
    socket: &mut WebSocket,
    events: &mut tokio::sync::broadcast::Receiver<JobEvent>,
    spots: &mut tokio::sync::watch::Receiver<Arc<position::Spots>>,
    last_spots: &mut Value,
    teller: &mut Teller,
) {
    let mut accounts = front.auth.watch_accounts();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outgoing: Vec<Message> = tokio::select! {
            changed = accounts.changed() => {
                if changed.is_err() || !front.auth.allows(&user.name, true) {
                    return close_disabled(socket).await;
                }
                Vec::new()
            },
            _ = recheck.tick() => {
                if !front.auth.allows(&user.name, false) {
                    return close_disabled(socket).await;
                }
                Vec::new()
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(body))) => answer(front, &body).into_iter().collect(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => Vec::new(),
            },
            event = events.recv() => match event {
                Ok(event) if event.user == user.name => tell(front, user, teller, &event).await,
                Ok(_) => Vec::new(),
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "socket fell behind the job feed");
                    let remaining = super::jobs::remaining(front, &user.name).await.unwrap_or(0);
                    vec![text("status", json!({"status": {"exec_info": {"queue_remaining": remaining}}}))]
                }
                Err(RecvError::Closed) => break,
            },
            changed = spots.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = spots.borrow_and_update().clone();
                let mine = json!(current.get(&user.name));
                if mine == *last_spots {
                    Vec::new()
                } else {
                    *last_spots = mine;
                    vec![queue_message(&current, &user.name)]
                }
            }
        };
        for message in outgoing {
            if socket.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Closes the socket of an account that is no longer allowed in.
async fn close_disabled(socket: &mut WebSocket) {
    tracing::info!("socket closed: the account is disabled or gone");
    let frame = axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: Utf8Bytes::from_static("this account is disabled"),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The editor's `feature_flags` gets ours; anything else is ignored.
fn answer(front: &Front, body: &str) -> Option<Message> {
    let message: Value = serde_json::from_str(body).ok()?;
    (message.get("type")?.as_str()? == "feature_flags").then(|| {
        text(
            "feature_flags",
            json!({
                "supports_preview_metadata": false,
                "max_upload_size": front.limits.max_upload_mib * 1024 * 1024,
                "node_replacements": false,
                "assets": false,
            }),
        )
    })
}

/// The messages for one of the user's job changes.
async fn tell(
    front: &Front,
    user: &Identity,
    teller: &mut Teller,
    event: &JobEvent,
) -> Vec<Message> {
    let job = if event.state.is_terminal() {
        front
            .queue
            .get(event.id, Requester::User(&user.name))
            .await
            .ok()
    } else {
        None
    };
    let remaining = super::jobs::remaining(front, &user.name).await.unwrap_or(0);
    // The payload is read only when a job starts (to find its sampler).
    let payload = if !teller_knows(teller, event) {
        front
            .queue
            .payload(event.id)
            .await
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    } else {
        None
    };
    teller
        .tell(
            event,
            job.as_ref(),
            || payload.as_ref().and_then(messages::progress_node),
            remaining,
        )
        .into_iter()
        .map(|(kind, data)| text(kind, data))
        .collect()
}

fn teller_knows(teller: &Teller, event: &JobEvent) -> bool {
    teller.knows(&event.prompt_id)
        || matches!(
            event.state,
            crate::queue::JobState::Queued | crate::queue::JobState::Leased
        )
}
