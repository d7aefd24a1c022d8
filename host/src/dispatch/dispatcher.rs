//! The dispatcher loop: the only code that moves jobs onto GPUs.
//!
//! Policy:
//! - **Capacity first.** A job is released only when some pool has a free
//!   slot: Verda's own queue is FIFO, so anything sent early would escape the
//!   scheduling policy.
//! - **Plugins decide.** The scheduler plugin picks the job from a snapshot
//!   of the queue; the selector plugin picks the pool. If the selector says
//!   nothing fits, the job stays queued. A shadow scheduler, when the
//!   operator sets one, is shown the same snapshot afterwards and decides
//!   nothing ([`crate::plugins::shadow`]).
//! - **One leader.** Only the host holding the dispatcher lease releases
//!   jobs and resolves expired leases; a re-attached job (its host died
//!   after the GPU got it) is followed here, never sent again.
//! - Running one job is [`super::running`]; the pools' counters are
//!   [`super::pool`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument as _;

use super::callback::{Callbacks, Watch};
use super::pool::Pool;
use super::pools::PoolsProbe;
use crate::plugins::Registry;
use crate::plugins::api::{self, CostEstimate};
use crate::queue::{Job, JobId, JobStore, Requester, StoreError};

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This host's id (lease owner, leader key).
    pub host: String,
    /// Lease length.
    pub lease: Duration,
    /// How long a job may run on a GPU before it fails.
    pub job_wait: Duration,
    /// How often to look at the queue when nothing woke the loop.
    pub tick: Duration,
    /// The data folder (outputs go under `users/<user>/output`).
    pub data_dir: PathBuf,
    /// Largest total of input files one job may send to a GPU.
    pub max_input_bytes: usize,
    /// This host's URL as the GPU workers reach it, for progress callbacks
    /// (none: no callbacks).
    pub callback_url: Option<String>,
}

/// The dispatcher.
pub struct Dispatcher {
    pub(super) store: Arc<dyn JobStore>,
    plugins: Arc<Registry>,
    pools: Vec<Arc<Pool>>,
    probe: PoolsProbe,
    pub(super) config: DispatcherConfig,
    job_wait_ms: AtomicU64,
    pub(super) callbacks: Arc<Callbacks>,
    /// Callbacks opened at submit, taken by the follow that comes next.
    pub(super) watches: Mutex<HashMap<String, Watch>>,
    /// Jobs this host is following now. A lease that lapsed while its
    /// follower here was cut off from the store (a Redis restart longer
    /// than a lease) is re-attached by this same host: the follower still
    /// running must stay the only one, or two followers of one GPU run
    /// share its outputs and one of them requeues it.
    following: Mutex<HashSet<JobId>>,
    wake: Notify,
    /// The workshop session; nothing is dispatched while it is closed.
    session: std::sync::OnceLock<Arc<crate::session::Session>>,
    /// Why dispatch is held (e.g. the budget is spent); none: not held.
    hold: Mutex<Option<String>>,
    /// Whether this host held the dispatcher lease at its last attempt.
    leading: std::sync::atomic::AtomicBool,
}

impl Dispatcher {
    /// A dispatcher over `pools`.
    pub fn new(
        store: Arc<dyn JobStore>,
        plugins: Arc<Registry>,
        pools: Vec<Arc<Pool>>,
        config: DispatcherConfig,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            store,
            plugins,
            probe: PoolsProbe::new(&pools),
            pools,
            job_wait_ms: AtomicU64::new(config.job_wait.as_millis() as u64),
            callbacks: Arc::new(Callbacks::new(config.callback_url.clone())),
            config,
            watches: Mutex::new(HashMap::new()),
            following: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            session: std::sync::OnceLock::new(),
            hold: Mutex::new(None),
            leading: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Follows `session`: while it is closed, queued jobs stay queued.
    /// Without one the dispatcher always runs.
    pub fn follow_session(&self, session: Arc<crate::session::Session>) {
        let _ = self.session.set(session);
        self.wake();
    }

    fn dispatching(&self) -> bool {
        self.held().is_none() && self.session.get().is_none_or(|s| s.dispatching())
    }

    /// Holds dispatch for `reason` (queued jobs stay queued, running ones
    /// finish), or releases it with `None`. Returns whether it changed.
    pub fn set_hold(&self, reason: Option<String>) -> bool {
        let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
        let changed = *hold != reason;
        *hold = reason;
        drop(hold);
        if changed {
            self.wake();
        }
        changed
    }

    /// Why dispatch is held, if it is.
    pub fn held(&self) -> Option<String> {
        self.hold.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This host's id (the dispatcher lease's owner name).
    pub fn host_id(&self) -> &str {
        &self.config.host
    }

    /// Whether this host held the dispatcher lease at its last attempt
    /// (shown in `/health`, so an operator can tell which host dispatches).
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// The pools, for the queue's ETA and the admin views.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let led = self.store.lead(&self.config.host, self.config.lease).await;
            self.leading
                .store(matches!(led, Ok(true)), Ordering::Relaxed);
            let progressed = match led {
                Ok(true) if self.dispatching() && self.pools.iter().any(|p| p.has_room()) => {
                    match self.dispatch_one().await {
                        Ok(progressed) => progressed,
                        Err(e) => {
                            tracing::warn!(error = %e, "dispatch step failed");
                            false
                        }
                    }
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the queue");
                    false
                }
            };
            if !progressed {
                let _ = tokio::time::timeout(self.config.tick, self.wake.notified()).await;
            }
        }
    }

    /// Wakes the loop (a job was enqueued, a slot freed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// One decision. Returns whether a job was started (or a race lost, so
    /// it is worth asking again at once).
    async fn dispatch_one(self: &Arc<Self>) -> Result<bool, StoreError> {
        let snapshot = self.store.snapshot().await?;
        if snapshot.pending.is_empty() {
            return Ok(false);
        }
        let (plugin_snapshot, ids) = snapshot.for_plugin();
        let plugins = self.plugins.clone();
        let (decision, plugin_snapshot) = tokio::task::spawn_blocking(move || {
            let decision = plugins.pick_next(&plugin_snapshot);
            (decision, plugin_snapshot)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("scheduler task: {e}")))?;
        let chosen = decision.value.and_then(|i| ids.get(i as usize)).copied();
        self.ask_shadow(plugin_snapshot, ids, chosen);
        let Some(id) = chosen else {
            return Ok(false);
        };
        let job = self.store.get(id, Requester::Admin).await?;
        // The selector sees only the pools the operator has in use.
        let in_use: Vec<&Arc<Pool>> = self.pools.iter().filter(|p| p.in_use()).collect();
        let pools: Vec<api::Backend> = in_use.iter().map(|p| p.as_plugin()).collect();
        let info = job_info(&job);
        let plugins = self.plugins.clone();
        let choice = tokio::task::spawn_blocking(move || plugins.select(&info, &pools))
            .await
            .map_err(|e| StoreError::Unavailable(format!("selector task: {e}")))?;
        let pool = match choice.value {
            Ok(index) => match in_use.get(index as usize).copied() {
                Some(pool) if pool.has_room() => pool.clone(),
                _ => return Ok(false),
            },
            Err(reason) => {
                tracing::debug!(job = id, %reason, "no pool for the job yet");
                return Ok(false);
            }
        };
        let job = match self
            .store
            .claim(id, &self.config.host, self.config.lease)
            .await
        {
            Ok(job) => job,
            Err(e @ (StoreError::AtRunningCap { .. } | StoreError::InvalidTransition { .. })) => {
                // An answer the dispatcher cannot use is the scheduler's
                // failure: counted, so a plugin that keeps giving one is
                // disabled and the built-in default decides, instead of
                // being asked again and again.
                self.plugins
                    .scheduler_answer_unusable(&decision.by, &e.to_string());
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        let waited = crate::queue::system_clock()
            .now_ms()
            .saturating_sub(job.created_at_ms);
        crate::observe::recorder().job_started(
            &job.workflow_kind,
            &pool.backend().info().name,
            Duration::from_millis(waited),
            !pool.backend().warm(),
        );
        self.spawn_run(job, pool, None);
        Ok(true)
    }

    /// Puts the decision just made to the shadow scheduler, if one is set,
    /// on a blocking thread nobody waits for: a slow or broken candidate
    /// never delays dispatch, and one still busy misses this decision.
    fn ask_shadow(
        &self,
        snapshot: api::Snapshot,
        ids: Vec<crate::queue::JobId>,
        chosen: Option<crate::queue::JobId>,
    ) {
        let shadow = self.plugins.shadow();
        if shadow.candidate().is_none() {
            return;
        }
        // At most one shadow call at a time: no thread is started for a
        // decision it would drop anyway.
        if shadow.busy() {
            shadow.drop_decision();
            return;
        }
        let plugins = self.plugins.clone();
        let now = crate::queue::system_clock().now_ms();
        tokio::task::spawn_blocking(move || {
            plugins.shadow().compare(&snapshot, &ids, chosen, now);
        });
    }

    /// Resolves expired leases (see [`crate::queue::recovery`]) and follows
    /// every job it re-attached to, while this host leads.
    async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        let now = crate::queue::system_clock().now_ms();
        let report = crate::queue::recover_expired(
            &*self.store,
            &self.probe,
            &self.config.host,
            self.config.lease,
            now,
        )
        .await?;
        for id in report.reattached {
            let job = self.store.get(id, Requester::Admin).await?;
            let Some(backend) = job.backend.clone() else {
                continue;
            };
            let Some(pool) = self
                .pools
                .iter()
                .find(|p| p.backend().info().name == backend.pool)
                .cloned()
            else {
                continue;
            };
            tracing::info!(job = id, pool = %backend.pool, backend_id = %backend.job_id, "following a re-attached job");
            self.spawn_run(job, pool, Some(backend.job_id));
        }
        Ok(())
    }

    /// Runs recovery every half lease (the first pass at once, so a
    /// restart recovers immediately), for as long as the task runs.
    pub async fn recovery_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval((self.config.lease / 2).max(Duration::from_secs(1)));
        loop {
            tick.tick().await;
            match self.store.lead(&self.config.host, self.config.lease).await {
                Ok(true) => {
                    if let Err(e) = self.recover().await {
                        tracing::warn!(error = %e, "recovery pass failed; retrying");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reach the queue to recover leases"),
            }
        }
    }

    fn spawn_run(self: &Arc<Self>, job: Job, pool: Arc<Pool>, reattached: Option<String>) {
        {
            let mut following = self.following.lock().unwrap_or_else(|p| p.into_inner());
            if reattached.is_some() && following.contains(&job.id) {
                // Ours again, and still followed here: its follower renews
                // the lease from now on.
                tracing::info!(job = job.id, "re-attached a job this host still follows");
                return;
            }
            following.insert(job.id);
        }
        pool.in_flight.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        let span = tracing::info_span!("job", job = job.id, prompt_id = %job.prompt_id, user = %job.user, pool = %pool.backend().info().name);
        tokio::spawn(
            async move {
                let id = job.id;
                this.run_job(job, &pool, reattached).await;
                this.following
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                pool.in_flight.fetch_sub(1, Ordering::SeqCst);
                this.wake();
            }
            .instrument(span),
        );
    }

    /// The ComfyUI client id this host's jobs carry.
    pub(super) fn client_id(&self) -> String {
        format!("comfyume-{}", self.config.host)
    }

    /// How long a job may run now (the operator may change it live).
    pub fn job_wait(&self) -> Duration {
        Duration::from_millis(self.job_wait_ms.load(Ordering::SeqCst))
    }

    /// Changes how long jobs may run; takes effect from the next job.
    pub fn set_job_wait(&self, wait: Duration) {
        self.job_wait_ms
            .store(wait.as_millis() as u64, Ordering::SeqCst);
    }

    /// The callbacks workers report progress to.
    pub fn callbacks(&self) -> &Arc<Callbacks> {
        &self.callbacks
    }
}

fn job_info(job: &Job) -> api::JobInfo {
    api::JobInfo {
        id: job.id,
        user: job.user.clone(),
        workflow_kind: job.workflow_kind.clone(),
        priority: job.priority.class(),
        cost: CostEstimate {
            frames: job.cost.frames,
            width: job.cost.width,
            height: job.cost.height,
            steps: job.cost.steps,
            gpu_seconds: job.cost.gpu_seconds,
        },
        attempts: job.attempts,
        lost_to_reclaim: job.lost_to_reclaim,
    }
}
