//! [`RedisStore`]: the [`JobStore`] over Redis. See the module docs for the
//! key layout and the outage policy.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, Script, Value};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::RESPONSE_TIMEOUT;
use crate::queue::clock::Clock;
use crate::queue::core::{event, is_prompt_id, pending_summary, running_summary};
use crate::queue::error::StoreError;
use crate::queue::job::{
    BackendRef, Job, JobEvent, JobId, JobState, NewJob, Output, Page, Priority, Progress,
    UserLimits,
};
use crate::queue::snapshot::{QueueSnapshot, UserSummary};
use crate::queue::store::{CancelOutcome, JobStore, Recovery, Requester, StoreLimits};
use crate::queue::transition::{self as t, Step};

/// Compare-and-set retries before a transition gives up (only under heavy
/// contention on one job, e.g. many hosts claiming the same job).
const MAX_CAS_RETRIES: usize = 32;
/// Jobs removed per `trim.lua` call.
const TRIM_BATCH: usize = 500;

struct Scripts {
    enqueue: Script,
    commit: Script,
    set_user: Script,
    trim: Script,
    lead: Script,
}

/// The Redis job store.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    limits: StoreLimits,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<JobEvent>,
    subscriber: AbortHandle,
    scripts: Scripts,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Waiting jobs sort by priority class, then by id (submit order).
fn queued_score(job: &Job) -> f64 {
    f64::from(job.priority.rank()) * 1e12 + job.id as f64
}

/// A script's answer: `{'ok'}` or `{'<error>', details…}`.
fn status(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| redis::from_redis_value_ref::<String>(v).unwrap_or_default())
            .collect(),
        other => vec![redis::from_redis_value_ref::<String>(other).unwrap_or_default()],
    }
}

impl RedisStore {
    /// Connects to `url` and starts the event subscriber. Keys live under `prefix`.
    pub async fn connect(
        url: &str,
        prefix: &str,
        limits: StoreLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("queue.redis_url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        let prefix = if prefix.ends_with(':') {
            prefix.to_string()
        } else {
            format!("{prefix}:")
        };
        let (events, _) = broadcast::channel(4096);
        let subscriber = tokio::spawn(subscribe(client, format!("{prefix}events"), events.clone()))
            .abort_handle();
        Ok(RedisStore {
            conn,
            prefix,
            limits,
            clock,
            events,
            subscriber,
            scripts: Scripts {
                enqueue: Script::new(include_str!("enqueue.lua")),
                commit: Script::new(include_str!("commit.lua")),
                set_user: Script::new(include_str!("set_user.lua")),
                trim: Script::new(include_str!("trim.lua")),
                lead: Script::new(include_str!("lead.lua")),
            },
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn job_key(&self, id: JobId) -> String {
        self.key(&format!("job:{id}"))
    }

    fn user_key(&self, user: &str) -> String {
        self.key(&format!("user:{user}"))
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The job and its version.
    async fn read(&self, id: JobId) -> Result<(String, Job), StoreError> {
        let mut conn = self.conn.clone();
        let (version, json): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.job_key(id))
            .arg("v")
            .arg("json")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match (version, json) {
            (Some(v), Some(json)) => Ok((v, serde_json::from_str(&json).map_err(corrupt)?)),
            _ => Err(t::not_found(id)),
        }
    }

    /// Reads, computes the transition with `step`, and commits it if the job
    /// did not change meanwhile; retries on a conflict.
    async fn transition(
        &self,
        id: JobId,
        step: impl Fn(Job, u64) -> Result<Step, StoreError>,
    ) -> Result<Job, StoreError> {
        self.transition_with(id, |job, now| step(job, now).map(|s| ((), Some(s))))
            .await
            .and_then(|((), job)| job.ok_or_else(|| t::not_found(id)))
    }

    /// [`Self::transition`] for a step that may be a no-op (`None`) and
    /// carries a value for the caller; the job is `None` when nothing changed.
    async fn transition_with<T>(
        &self,
        id: JobId,
        step: impl Fn(Job, u64) -> Result<(T, Option<Step>), StoreError>,
    ) -> Result<(T, Option<Job>), StoreError> {
        for _ in 0..MAX_CAS_RETRIES {
            let (version, job) = self.read(id).await?;
            match step(job, self.now())? {
                (value, None) => return Ok((value, None)),
                (value, Some(next)) => {
                    if let Some(job) = self.commit(&version, next).await? {
                        return Ok((value, Some(job)));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "job {id} is changing too fast to update; try again"
        )))
    }

    /// Runs `commit.lua`. `None` means the version moved (retry).
    async fn commit(&self, version: &str, step: Step) -> Result<Option<Job>, StoreError> {
        let Step {
            job,
            from,
            delta,
            claim,
            announce,
        } = step;
        let json = serde_json::to_string(&job).map_err(corrupt)?;
        let event = if announce {
            serde_json::to_string(&event(&job)).map_err(corrupt)?
        } else {
            String::new()
        };
        let lease = job
            .lease
            .as_ref()
            .map(|l| l.expires_at_ms.to_string())
            .unwrap_or_default();
        let mut conn = self.conn.clone();
        let answer: Value = self
            .scripts
            .commit
            .key(self.job_key(job.id))
            .key(self.user_key(&job.user))
            .key(self.key("queued"))
            .key(self.key("active"))
            .key(self.key("done"))
            .key(self.key("events"))
            .arg(version)
            .arg(json)
            .arg(from.as_str())
            .arg(job.state.as_str())
            .arg(job.id)
            .arg(queued_score(&job))
            .arg(lease)
            .arg(u8::from(claim))
            .arg(delta.pending)
            .arg(delta.running)
            .arg(delta.done)
            .arg(delta.gpu_seconds)
            .arg(
                delta
                    .dispatched_at_ms
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            )
            .arg(job.updated_at_ms)
            .arg(event)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let status = status(&answer);
        match status.first().map(String::as_str) {
            Some("ok") => Ok(Some(job)),
            Some("conflict") => Ok(None),
            Some("not_found") => Err(t::not_found(job.id)),
            Some("at_running_cap") => Err(StoreError::AtRunningCap {
                user: job.user.clone(),
                running: status.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                max: status.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            }),
            _ => Err(StoreError::Corrupt(format!(
                "commit.lua answered {status:?}"
            ))),
        }
    }

    /// Reads many jobs in one round trip, skipping ones that vanished.
    async fn read_many(&self, ids: &[JobId]) -> Result<Vec<Job>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.job_key(*id), "json");
        }
        let mut conn = self.conn.clone();
        let rows: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        rows.into_iter()
            .flatten()
            .map(|json| serde_json::from_str(&json).map_err(corrupt))
            .collect()
    }

    async fn users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn
            .smembers(self.key("users"))
            .await
            .map_err(unavailable)?;
        names.sort();
        if names.is_empty() {
            // An empty pipeline is an error in redis-rs ("empty command"):
            // a fresh Redis has no users yet.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(self.user_key(name));
        }
        let rows: Vec<std::collections::HashMap<String, String>> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(names
            .into_iter()
            .zip(rows)
            .map(|(name, row)| {
                let num = |k: &str| {
                    row.get(k)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                let int = |k: &str| num(k).max(0.0).min(f64::from(u32::MAX)) as u32;
                UserSummary {
                    name,
                    priority: Priority::from_rank(int("priority") as u8),
                    running: int("running"),
                    pending: int("pending"),
                    gpu_seconds_used: num("gpu_seconds"),
                    jobs_done: int("jobs_done"),
                    max_running: int("max_running"),
                    max_pending: int("max_pending"),
                    last_dispatched_at_ms: row
                        .get("last_dispatched_at_ms")
                        .and_then(|v| v.parse().ok()),
                }
            })
            .collect())
    }
}

/// Forwards published job events to local subscribers; resubscribes after
/// a connection loss.
async fn subscribe(client: redis::Client, channel: String, events: broadcast::Sender<JobEvent>) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(text) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<JobEvent>(&text) {
                            Ok(e) => {
                                let _ = events.send(e);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable job event on {channel}")
                            }
                        }
                    }
                    tracing::warn!(%channel, "job event subscription lost; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "subscribing to job events failed"),
            },
            Err(e) => tracing::debug!(error = %e, "redis unavailable for job events; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[async_trait]
impl JobStore for RedisStore {
    async fn set_user(&self, limits: UserLimits) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: Value = self
            .scripts
            .set_user
            .key(self.user_key(&limits.name))
            .key(self.key("users"))
            .arg(&limits.name)
            .arg(limits.max_pending)
            .arg(limits.max_running)
            .arg(limits.priority.rank())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn enqueue(&self, new: NewJob) -> Result<Job, StoreError> {
        if new.payload.len() > self.limits.max_payload_bytes {
            return Err(StoreError::PayloadTooLarge {
                size: new.payload.len(),
                max: self.limits.max_payload_bytes,
            });
        }
        if !is_prompt_id(&new.prompt_id) {
            return Err(StoreError::BadPromptId(new.prompt_id.clone()));
        }
        let mut conn = self.conn.clone();
        // Id 0 until the script allocates the real one, after its checks.
        let mut job = Job::new(0, &new, self.now());
        let answer: Value = self
            .scripts
            .enqueue
            .key(self.user_key(&job.user))
            .key(self.key(&format!("prompt:{}", job.prompt_id)))
            .key(self.key("seq"))
            .key(self.key("queued"))
            .key(self.key("events"))
            .arg(serde_json::to_string(&job).map_err(corrupt)?)
            .arg(queued_score(&job))
            .arg(new.payload.as_slice())
            .arg(serde_json::to_string(&event(&job)).map_err(corrupt)?)
            .arg(&job.user)
            .arg(&job.prompt_id)
            .arg(&self.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let status = status(&answer);
        match status.first().map(String::as_str) {
            Some("ok") => {
                job.id = status
                    .get(1)
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("enqueue.lua answered {status:?}"))
                    })?;
                Ok(job)
            }
            Some("unknown_user") => Err(StoreError::UnknownUser(new.user)),
            Some("too_many_pending") => Err(StoreError::TooManyPending {
                user: new.user,
                pending: status.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                max: status.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
            }),
            Some("bad_prompt_id") => Err(StoreError::BadPromptId(new.prompt_id)),
            _ => Err(StoreError::Corrupt(format!(
                "enqueue.lua answered {status:?}"
            ))),
        }
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, StoreError> {
        let mut conn = self.conn.clone();
        let queued: Vec<JobId> = conn
            .zrange(self.key("queued"), 0, -1)
            .await
            .map_err(unavailable)?;
        let active: Vec<JobId> = conn
            .zrange(self.key("active"), 0, -1)
            .await
            .map_err(unavailable)?;
        let mut pending: Vec<_> = self
            .read_many(&queued)
            .await?
            .iter()
            .filter(|j| j.state == JobState::Queued)
            .map(pending_summary)
            .collect();
        pending.sort_by_key(|p| p.id);
        // The active set is ordered by lease expiry; the snapshot is by id,
        // as the embedded store gives it.
        let mut running: Vec<_> = self
            .read_many(&active)
            .await?
            .iter()
            .filter(|j| j.state.is_active())
            .map(running_summary)
            .collect();
        running.sort_by_key(|r| r.id);
        Ok(QueueSnapshot {
            now_ms: self.now(),
            pending,
            running,
            users: self.users().await?,
        })
    }

    async fn claim(&self, id: JobId, owner: &str, lease: Duration) -> Result<Job, StoreError> {
        self.transition(id, |job, now| t::claim(job, owner, ms(lease), now))
            .await
    }

    async fn renew(&self, id: JobId, owner: &str, lease: Duration) -> Result<(), StoreError> {
        self.transition(id, |job, now| t::renew(job, owner, ms(lease), now))
            .await
            .map(|_| ())
    }

    async fn dispatched(
        &self,
        id: JobId,
        owner: &str,
        backend: BackendRef,
    ) -> Result<Job, StoreError> {
        self.transition(id, |job, now| {
            t::dispatched(job, owner, backend.clone(), now)
        })
        .await
    }

    async fn running(
        &self,
        id: JobId,
        owner: &str,
        progress: Option<Progress>,
    ) -> Result<Job, StoreError> {
        self.transition(id, |job, now| t::running(job, owner, progress, now))
            .await
    }

    async fn succeed(
        &self,
        id: JobId,
        owner: &str,
        outputs: Vec<Output>,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.transition(id, |job, now| {
            t::succeed(job, owner, outputs.clone(), gpu_seconds, now)
        })
        .await
    }

    async fn fail(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        gpu_seconds: f64,
    ) -> Result<Job, StoreError> {
        self.transition(id, |job, now| t::fail(job, owner, reason, gpu_seconds, now))
            .await
    }

    async fn cancelled(&self, id: JobId, owner: &str, gpu_seconds: f64) -> Result<Job, StoreError> {
        self.transition(id, |job, now| t::cancelled(job, owner, gpu_seconds, now))
            .await
    }

    async fn requeue(
        &self,
        id: JobId,
        owner: &str,
        reason: &str,
        lost_to_reclaim: bool,
    ) -> Result<Job, StoreError> {
        let limits = &self.limits;
        self.transition(id, |job, now| {
            t::requeue(job, owner, reason, lost_to_reclaim, limits, now)
        })
        .await
    }

    async fn cancel(&self, id: JobId, by: Requester<'_>) -> Result<CancelOutcome, StoreError> {
        self.transition_with(id, |job, now| t::cancel(job, by, now))
            .await
            .map(|(outcome, _)| outcome)
    }

    async fn user_limits(&self, user: &str) -> Result<Option<UserLimits>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: std::collections::HashMap<String, String> = conn
            .hgetall(self.user_key(user))
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let int = |k: &str| {
            fields
                .get(k)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        Ok(Some(UserLimits {
            name: user.to_string(),
            max_pending: int("max_pending"),
            max_running: int("max_running"),
            priority: Priority::from_rank(int("priority").min(3) as u8),
        }))
    }

    async fn reprioritise(&self, id: JobId, priority: Priority) -> Result<Job, StoreError> {
        self.transition(id, |job, now| t::reprioritise(job, priority, now))
            .await
    }

    async fn expired_leases(&self, now_ms: u64) -> Result<Vec<Job>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<JobId> = conn
            .zrangebyscore(self.key("active"), "-inf", format!("({now_ms}"))
            .await
            .map_err(unavailable)?;
        Ok(self
            .read_many(&ids)
            .await?
            .into_iter()
            .filter(|j| t::expired(j, now_ms))
            .collect())
    }

    async fn recover(&self, id: JobId, how: Recovery, lease: Duration) -> Result<Job, StoreError> {
        let limits = &self.limits;
        self.transition(id, |job, now| {
            t::recover(job, how.clone(), ms(lease), limits, now)
        })
        .await
    }

    async fn payload(&self, id: JobId) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn.clone();
        let body: Option<Vec<u8>> = conn
            .get(self.key(&format!("payload:{id}")))
            .await
            .map_err(unavailable)?;
        body.ok_or_else(|| t::not_found(id))
    }

    async fn get(&self, id: JobId, by: Requester<'_>) -> Result<Job, StoreError> {
        t::visible(self.read(id).await?.1, by)
    }

    async fn get_by_prompt_id(
        &self,
        prompt_id: &str,
        by: Requester<'_>,
    ) -> Result<Job, StoreError> {
        let missing = || StoreError::NotFound(prompt_id.to_string());
        if !is_prompt_id(prompt_id) {
            return Err(missing());
        }
        let mut conn = self.conn.clone();
        let id: Option<JobId> = conn
            .get(self.key(&format!("prompt:{prompt_id}")))
            .await
            .map_err(unavailable)?;
        let id = id.ok_or_else(missing)?;
        let job = self.read(id).await.map_err(|e| {
            if matches!(e, StoreError::NotFound(_)) {
                missing()
            } else {
                e
            }
        })?;
        t::visible(job.1, by).map_err(|_| missing())
    }

    async fn list_user(&self, user: &str, page: Page) -> Result<Vec<Job>, StoreError> {
        let limit = page.limit.min(500);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let start = page.offset as isize;
        let ids: Vec<JobId> = conn
            .zrevrange(
                self.key(&format!("user:{user}:jobs")),
                start,
                start + limit as isize - 1,
            )
            .await
            .map_err(unavailable)?;
        self.read_many(&ids).await
    }

    async fn trim(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let mut conn = self.conn.clone();
            let removed: usize = self
                .scripts
                .trim
                .key(self.key("done"))
                .arg(before_ms)
                .arg(&self.prefix)
                .arg(TRIM_BATCH)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            total += removed;
            if removed < TRIM_BATCH {
                return Ok(total);
            }
        }
    }

    async fn lead(&self, host: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let led: i64 = self
            .scripts
            .lead
            .key(self.key("leader"))
            .arg(host)
            .arg(ms(ttl).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(led == 1)
    }

    fn events(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }
}
