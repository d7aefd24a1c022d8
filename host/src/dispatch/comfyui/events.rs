//! One websocket per ComfyUI server and client id, shared by every prompt
//! followed there.
//!
//! Why one: ComfyUI keeps one socket per `clientId` (a newer socket
//! replaces the older, which then hears nothing more, and the older one
//! closing unregisters the id altogether), and it sends a prompt's events
//! only to the socket of the client id the prompt was submitted with. A
//! socket per job with a shared client id starves every job but the
//! newest; a client id per job is lost with the process, so a job
//! re-attached after a restart would hear nothing.
//!
//! Policy:
//! - A [`Hub`] owns the socket: it opens it on first use, reads it in one
//!   task, and hands each prompt's events to that prompt's follower by
//!   prompt id (a channel per followed prompt). Events of prompts nobody
//!   follows are dropped: a follower that registers late looks at
//!   `/history` right after registering (see [`super::client`]), and
//!   ComfyUI announces a prompt's end after writing its history entry
//!   (`executing` with `node: null`), so nothing is missed between the two.
//! - A socket that cannot be opened or drops is opened again with backoff
//!   (100 ms doubling to 5 s). Every change of the link (up or down) is
//!   published on a watch channel: followers look at `/history` at once on
//!   each change (events sent while the socket was down are lost), and
//!   poll while it is down.
//! - The task ends when the last handle on the hub is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::Url;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::protocol::WsMessage;

/// First wait before opening a dropped socket again.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the socket said about one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptEvent {
    /// Step progress of a node.
    Progress {
        /// Steps done.
        value: u32,
        /// Steps total.
        max: u32,
    },
    /// `execution_success`, `execution_error` or `execution_interrupted`:
    /// the history entry is being written (ComfyUI sends these before it).
    Ending,
    /// `executing` with `node: null`: the history entry is written.
    Ended,
}

/// The state of the hub's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The first attempt to open it is under way.
    Opening,
    /// Open; `generation` counts the openings so far.
    Up {
        /// Openings so far (a reconnect is a new generation).
        generation: u64,
    },
    /// Not open; being opened again.
    Down,
}

struct Shared {
    url: Url,
    connect_timeout: Duration,
    followers: Mutex<HashMap<String, mpsc::UnboundedSender<PromptEvent>>>,
    link: watch::Sender<Link>,
    /// Never sent on: dropped with the hub, which ends the task.
    _alive: watch::Sender<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The socket of one client id on one ComfyUI server.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// One prompt's events and the link's changes, for as long as it is held.
pub struct Subscription {
    shared: Arc<Shared>,
    prompt_id: String,
    /// The prompt's events, in the order the socket delivered them.
    pub events: mpsc::UnboundedReceiver<PromptEvent>,
    /// The link; changes mean "events may have been missed".
    pub link: watch::Receiver<Link>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.shared.followers).remove(&self.prompt_id);
    }
}

impl Hub {
    /// Starts the hub for `ws_url` (already carrying `clientId`); the
    /// socket is opened in the background at once. Must be called on a
    /// tokio runtime.
    pub fn start(ws_url: Url, connect_timeout: Duration) -> Self {
        let (link, _) = watch::channel(Link::Opening);
        let (alive, hub_gone) = watch::channel(());
        let shared = Arc::new(Shared {
            url: ws_url,
            connect_timeout,
            followers: Mutex::new(HashMap::new()),
            link,
            _alive: alive,
        });
        tokio::spawn(run(Arc::downgrade(&shared), hub_gone));
        Hub { shared }
    }

    /// Registers a follower of `prompt_id` (replacing an earlier one).
    pub fn subscribe(&self, prompt_id: &str) -> Subscription {
        let (tx, events) = mpsc::unbounded_channel();
        lock(&self.shared.followers).insert(prompt_id.to_string(), tx);
        Subscription {
            shared: self.shared.clone(),
            prompt_id: prompt_id.to_string(),
            events,
            link: self.shared.link.subscribe(),
        }
    }

    /// Waits until the first attempt to open the socket is over (opened
    /// or failed), so a prompt submitted next has its events delivered.
    pub async fn ready(&self) {
        let mut link = self.shared.link.subscribe();
        let _ = tokio::time::timeout(
            self.shared.connect_timeout,
            link.wait_for(|l| *l != Link::Opening),
        )
        .await;
    }

    /// The link now.
    pub fn link(&self) -> Link {
        *self.shared.link.borrow()
    }
}

/// Opens the socket, reads it, opens it again when it drops; ends when the
/// hub is gone.
async fn run(shared: Weak<Shared>, mut hub_gone: watch::Receiver<()>) {
    let mut backoff = BACKOFF_FIRST;
    let mut generation = 0u64;
    loop {
        let Some((url, timeout)) = shared.upgrade().map(|s| (s.url.clone(), s.connect_timeout))
        else {
            return;
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(url.as_str())) => opened,
            _ = hub_gone.changed() => return,
        };
        match opened {
            Ok(Ok((socket, _))) => {
                generation += 1;
                backoff = BACKOFF_FIRST;
                let Some(s) = shared.upgrade() else { return };
                s.link.send_replace(Link::Up { generation });
                drop(s);
                tracing::debug!(url = %url, generation, "ComfyUI websocket open");
                if !read(&shared, socket, &mut hub_gone).await {
                    return;
                }
                tracing::warn!(url = %url, "ComfyUI websocket dropped; opening it again");
            }
            Ok(Err(e)) => tracing::debug!(url = %url, error = %e, "ComfyUI websocket refused"),
            Err(_) => tracing::debug!(url = %url, "ComfyUI websocket: no answer in time"),
        }
        match shared.upgrade() {
            Some(s) => s.link.send_replace(Link::Down),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = hub_gone.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Reads one socket until it drops (`true`) or the hub is gone (`false`).
async fn read<S>(
    shared: &Weak<Shared>,
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    hub_gone: &mut watch::Receiver<()>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = hub_gone.changed() => return false,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue, // binary previews, pings
            Some(Err(_)) | None => return true,
        };
        let Ok(message) = serde_json::from_str::<WsMessage>(&text) else {
            continue;
        };
        let event = match &message {
            WsMessage::Progress { value, max, .. } => PromptEvent::Progress {
                value: *value,
                max: *max,
            },
            WsMessage::ExecutionSuccess { .. }
            | WsMessage::ExecutionError { .. }
            | WsMessage::ExecutionInterrupted { .. } => PromptEvent::Ending,
            WsMessage::Executing { node: None, .. } => PromptEvent::Ended,
            _ => continue,
        };
        let Some(prompt_id) = message.prompt_id() else {
            continue;
        };
        let Some(s) = shared.upgrade() else {
            return false;
        };
        if let Some(follower) = lock(&s.followers).get(prompt_id) {
            let _ = follower.send(event);
        }
    }
}
