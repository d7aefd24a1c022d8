//! The dashboard's live feed: one JSON snapshot of everything the page
//! shows, pushed as server-sent events, and the same snapshot on request
//! for the page's polling fallback.
//!
//! Policy:
//! - The snapshot is made by the API's own handlers (jobs, attendees,
//!   pools, plugins, settings, session), so the page shows exactly what the
//!   API answers; a part that fails is left out and its error listed in
//!   `errors`, the rest still arrives.
//! - One task per host makes it, started by the first dashboard that
//!   connects: about once a second, and within `SETTLE` of a queue change
//!   (the store's change feed, as `front::ws::position` watches it). With no
//!   dashboard open it makes nothing and forgets the last one, so a page
//!   opened later never starts from stale data.
//! - Every connected page shares the one serialised snapshot; a slow page
//!   skips to the newest (a `watch` channel), it never queues them up.
//! - It shows the newest `JOBS_SHOWN` jobs; older ones are in
//!   `/admin/api/jobs` with filters.

use std::convert::Infallible;
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Notify, watch};

use super::super::{Admin, attendees, control, jobs, plugins};

/// How many of the newest jobs a snapshot carries.
const JOBS_SHOWN: usize = 200;
/// A snapshot at least this often while a page is open.
const PERIOD: Duration = Duration::from_secs(1);
/// A burst of queue changes settles this long into one snapshot.
const SETTLE: Duration = Duration::from_millis(150);

/// The feed shared by every open dashboard.
pub(super) struct Feed {
    admin: Arc<Admin>,
    /// The newest snapshot, serialised; `None` while nobody watches.
    latest: watch::Sender<Option<Arc<str>>>,
    /// A page connected: make a snapshot now.
    wake: Notify,
    started: Once,
}

impl Feed {
    pub(super) fn new(admin: Arc<Admin>) -> Arc<Feed> {
        Arc::new(Feed {
            admin,
            latest: watch::Sender::new(None),
            wake: Notify::new(),
            started: Once::new(),
        })
    }

    /// Starts the task on first use (a request handler: inside the runtime).
    fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            tokio::spawn(run(self.clone()));
        });
    }
}

async fn run(feed: Arc<Feed>) {
    let mut events = feed.admin.state.queue.events();
    loop {
        if feed.latest.receiver_count() > 0 {
            let text = build(&feed.admin).await.to_string();
            feed.latest.send_replace(Some(text.into()));
        } else if feed.latest.borrow().is_some() {
            feed.latest.send_replace(None);
        }
        tokio::select! {
            event = events.recv() => if let Err(RecvError::Closed) = event {
                return;
            },
            () = feed.wake.notified() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
        tokio::time::sleep(SETTLE).await;
        loop {
            match events.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

/// Everything the page shows, from the API's handlers.
pub(super) async fn build(admin: &Arc<Admin>) -> Value {
    let (jobs, attendees, pools, plugins, settings, session) = tokio::join!(
        jobs::list(
            State(admin.clone()),
            Query(jobs::Filter::newest(JOBS_SHOWN))
        ),
        attendees::list(State(admin.clone())),
        control::pools(State(admin.clone())),
        plugins::status(State(admin.clone())),
        control::settings(State(admin.clone())),
        control::session(State(admin.clone())),
    );
    let mut errors = Vec::new();
    let mut part = |name: &str, answer: Result<Json<Value>, crate::front::ApiError>| match answer {
        Ok(Json(mut body)) => body[name].take(),
        Err(error) => {
            errors.push(format!("{name}: {error}"));
            Value::Null
        }
    };
    let jobs = part("jobs", jobs);
    let attendees = part("attendees", attendees);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "now_ms": now_ms,
        "jobs_shown": JOBS_SHOWN,
        "jobs": jobs,
        "attendees": attendees,
        "pools": pools.0["pools"],
        "plugins": plugins.0,
        "settings": settings.0,
        "session": session.0["state"],
        "errors": errors,
    })
}

#[utoipa::path(get, path = "/admin/api/events", operation_id = "dashboard_events", tag = "dashboard",
    responses((status = 200, description = "Server-sent events: a `snapshot` event (the JSON of `GET /admin/api/snapshot`) now and as things change", content_type = "text/event-stream", body = String))
)]
/// `GET /admin/api/events`: a `snapshot` event now and as things change.
pub(super) async fn events(
    State(feed): State<Arc<Feed>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    feed.start();
    let mut rx = feed.latest.subscribe();
    rx.mark_changed();
    feed.wake.notify_one();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            let current = rx.borrow_and_update().clone();
            if let Some(text) = current {
                let event = Event::default().event("snapshot").data(&*text);
                return Some((Ok(event), rx));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[utoipa::path(get, path = "/admin/api/snapshot", operation_id = "dashboard_snapshot", tag = "dashboard",
    responses((status = 200, description = "Everything the dashboard shows: `now_ms`, `jobs_shown`, `jobs`, `attendees`, `pools`, `plugins`, `settings`, `session` and the `errors` of parts that failed", body = Object))
)]
/// `GET /admin/api/snapshot`: the same snapshot, made now (polling).
pub(super) async fn snapshot(State(feed): State<Arc<Feed>>) -> Json<Value> {
    Json(build(&feed.admin).await)
}
