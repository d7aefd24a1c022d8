//! The dispatcher loop: the only code that moves jobs onto GPUs.
//!
//! Policy:
//! - **Capacity first.** A job is released only when some pool has a free
//!   slot: Verda's own queue is FIFO, so anything sent early would escape the
//!   scheduling policy.
//! - **Plugins decide.** The scheduler plugin picks the job from a snapshot
//!   of the queue; the selector plugin picks the pool. If the selector says
//!   nothing fits, the job stays queued.
//! - **Record before run.** The job is claimed under a lease, and its
//!   backend job id is recorded before (ComfyUI: we choose the id) or right
//!   after (when the backend chooses it) the submit, so recovery after a
//!   crash re-attaches instead of paying twice.
//! - **While it runs** the lease is renewed every third of its length, and a
//!   cancel requested by the owner or the operator stops the GPU work.
//! - **Outcomes.** Outputs are downloaded into `<data>/users/<user>/output/`
//!   (names checked, prefixed with the job's prompt id so jobs never
//!   overwrite each other); a backend that is unreachable or lost the job
//!   gets the job requeued (`attempts + 1`, flagged as lost to a reclaim on
//!   a spot pool); a refusal or a timeout fails the job with the reason.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::backend::{Backend, BackendError};
use super::comfyui::protocol::Outcome;
use crate::plugins::Registry;
use crate::plugins::api::{self, CostEstimate, Tier};
use crate::queue::{BackendRef, Job, JobStore, Output, Progress, Requester, StoreError};

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
}

/// A pool and its live counters.
pub struct Pool {
    backend: Arc<dyn Backend>,
    in_flight: AtomicU32,
    failures: Mutex<Vec<Instant>>,
}

impl Pool {
    /// Wraps a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Arc<Self> {
        Arc::new(Pool {
            backend,
            in_flight: AtomicU32::new(0),
            failures: Mutex::new(Vec::new()),
        })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn recent_failures(&self) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|t| t.elapsed() < Duration::from_secs(300));
        failures.len() as u32
    }

    fn fail(&self) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
    }

    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) < self.backend.info().capacity
    }

    fn as_plugin(&self) -> api::Backend {
        let info = self.backend.info();
        let recent_failures = self.recent_failures();
        api::Backend {
            name: info.name.clone(),
            gpu: info.gpu.clone(),
            tier: if info.spot {
                Tier::Spot
            } else {
                Tier::OnDemand
            },
            healthy: recent_failures < 3,
            // A directly reached ComfyUI is up or unreachable; there is no
            // cold replica to report until the Verda backend exists.
            warm: true,
            in_flight: self.in_flight.load(Ordering::SeqCst),
            capacity: info.capacity,
            recent_failures,
            price_per_hour: info.price_per_hour,
        }
    }
}

/// The dispatcher.
pub struct Dispatcher {
    store: Arc<dyn JobStore>,
    plugins: Arc<Registry>,
    pools: Vec<Arc<Pool>>,
    config: DispatcherConfig,
    wake: Notify,
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
            pools,
            config,
            wake: Notify::new(),
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            let progressed = match self.store.lead(&self.config.host, self.config.lease).await {
                Ok(true) if self.pools.iter().any(|p| p.has_room()) => {
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
        let decision = tokio::task::spawn_blocking(move || plugins.pick_next(&plugin_snapshot))
            .await
            .map_err(|e| StoreError::Unavailable(format!("scheduler task: {e}")))?;
        let Some(&id) = decision.value.and_then(|i| ids.get(i as usize)) else {
            return Ok(false);
        };
        let job = self.store.get(id, Requester::Admin).await?;
        let pools: Vec<api::Backend> = self.pools.iter().map(|p| p.as_plugin()).collect();
        let info = job_info(&job);
        let plugins = self.plugins.clone();
        let choice = tokio::task::spawn_blocking(move || plugins.select(&info, &pools))
            .await
            .map_err(|e| StoreError::Unavailable(format!("selector task: {e}")))?;
        let pool = match choice.value {
            Ok(index) => match self.pools.get(index as usize) {
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
            Err(StoreError::AtRunningCap { .. } | StoreError::InvalidTransition { .. }) => {
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        pool.in_flight.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        let span = tracing::info_span!("job", job = job.id, user = %job.user, pool = %pool.backend.info().name);
        tokio::spawn(
            async move {
                this.run_job(job, &pool).await;
                pool.in_flight.fetch_sub(1, Ordering::SeqCst);
                this.wake();
            }
            .instrument(span),
        );
        Ok(true)
    }

    /// Runs one claimed job to the end and records the outcome.
    async fn run_job(&self, job: Job, pool: &Pool) {
        let owner = self.config.host.as_str();
        let started = Instant::now();
        let result = self.attempt(&job, pool).await;
        let gpu_seconds = started.elapsed().as_secs_f64();
        let store = &self.store;
        let recorded = match result {
            Ok(outputs) => store
                .succeed(job.id, owner, outputs, gpu_seconds)
                .await
                .map(drop),
            Err(Attempt::Cancelled) => store.cancelled(job.id, owner, gpu_seconds).await.map(drop),
            Err(Attempt::Failed(reason)) => store
                .fail(job.id, owner, &reason, gpu_seconds)
                .await
                .map(drop),
            Err(Attempt::Lost(reason)) => {
                pool.fail();
                let spot = pool.backend.info().spot;
                store.requeue(job.id, owner, &reason, spot).await.map(drop)
            }
        };
        if let Err(e) = recorded {
            // The lease was taken over (this host was presumed dead): the
            // new owner follows the same backend job.
            tracing::warn!(job = job.id, error = %e, "could not record the outcome");
        }
    }

    async fn attempt(&self, job: &Job, pool: &Pool) -> Result<Vec<Output>, Attempt> {
        let owner = self.config.host.as_str();
        let backend = &pool.backend;
        let payload: Value = match self.store.payload(job.id).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Attempt::Failed(format!("stored prompt unreadable: {e}")))?,
            Err(e) => return Err(Attempt::Lost(e.to_string())),
        };
        let client_id = format!("comfyume-{}", self.config.host);
        let record = |backend_id: String| BackendRef {
            pool: backend.info().name.clone(),
            job_id: backend_id,
        };
        let backend_id = match backend.chosen_id(&job.prompt_id) {
            Some(chosen) => {
                self.store
                    .dispatched(job.id, owner, record(chosen.clone()))
                    .await
                    .map_err(lost)?;
                backend
                    .submit(&job.prompt_id, &client_id, &payload)
                    .await
                    .map_err(from_backend)?;
                chosen
            }
            None => {
                let id = backend
                    .submit(&job.prompt_id, &client_id, &payload)
                    .await
                    .map_err(from_backend)?;
                self.store
                    .dispatched(job.id, owner, record(id.clone()))
                    .await
                    .map_err(lost)?;
                id
            }
        };
        self.store
            .running(job.id, owner, None)
            .await
            .map_err(lost)?;

        // Renew the lease and watch for a cancel while the job runs.
        let keeper = {
            let (store, host, lease, backend, id, backend_id) = (
                self.store.clone(),
                self.config.host.clone(),
                self.config.lease,
                backend.clone(),
                job.id,
                backend_id.clone(),
            );
            tokio::spawn(async move {
                let mut cancelled = false;
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let _ = store.renew(id, &host, lease).await;
                    let wants_cancel = store
                        .get(id, Requester::Admin)
                        .await
                        .is_ok_and(|j| j.cancel_requested);
                    if wants_cancel && !cancelled {
                        cancelled = true;
                        if let Err(e) = backend.cancel(&backend_id).await {
                            tracing::warn!(job = id, error = %e, "could not stop the GPU work");
                        }
                    }
                }
            })
        };
        let progress_store = self.store.clone();
        let progress_owner = self.config.host.clone();
        let id = job.id;
        let mut progress = move |value: u32, max: u32| {
            let (store, owner) = (progress_store.clone(), progress_owner.clone());
            tokio::spawn(async move {
                let _ = store
                    .running(id, &owner, Some(Progress { value, max }))
                    .await;
            });
        };
        let outcome = backend
            .wait(&backend_id, &client_id, self.config.job_wait, &mut progress)
            .await;
        keeper.abort();
        let cancel_requested = self
            .store
            .get(job.id, Requester::Admin)
            .await
            .is_ok_and(|j| j.cancel_requested);
        match outcome.map_err(from_backend)? {
            Outcome::Success(nodes) => self.store_outputs(job, backend.as_ref(), &nodes).await,
            Outcome::Failed(_) if cancel_requested => Err(Attempt::Cancelled),
            Outcome::Failed(reason) => Err(Attempt::Failed(reason)),
            Outcome::Pending => Err(Attempt::Lost("the backend reported no result".into())),
        }
    }

    /// Downloads every output into the owner's folder.
    async fn store_outputs(
        &self,
        job: &Job,
        backend: &dyn Backend,
        nodes: &std::collections::BTreeMap<String, super::comfyui::protocol::NodeOutput>,
    ) -> Result<Vec<Output>, Attempt> {
        let user_dir = user_output_dir(&self.config.data_dir, &job.user).ok_or_else(|| {
            Attempt::Failed(format!("user name {:?} cannot be a folder", job.user))
        })?;
        let mut outputs = Vec::new();
        for (node, output) in nodes {
            for (file, animated) in output.files() {
                let Some(relative) = file.safe_path() else {
                    return Err(Attempt::Failed(format!(
                        "the backend named an unsafe output path {:?}",
                        file.filename
                    )));
                };
                let bytes = backend.download(file).await.map_err(from_backend)?;
                let short = &job.prompt_id[..8.min(job.prompt_id.len())];
                let filename = format!("{short}_{}", file.filename);
                let folder = match relative.rsplit_once('/') {
                    Some((sub, _)) => user_dir.join(sub),
                    None => user_dir.clone(),
                };
                write_file(&folder, &filename, &bytes)
                    .map_err(|e| Attempt::Failed(format!("storing {filename}: {e}")))?;
                outputs.push(Output {
                    node_id: node.clone(),
                    filename,
                    subfolder: file.subfolder.clone(),
                    kind: file.kind.clone(),
                    animated,
                });
            }
        }
        Ok(outputs)
    }
}

/// How an attempt ended, when not with outputs.
enum Attempt {
    Cancelled,
    Failed(String),
    Lost(String),
}

fn lost(e: StoreError) -> Attempt {
    Attempt::Lost(e.to_string())
}

fn from_backend(e: BackendError) -> Attempt {
    match e {
        BackendError::Unavailable(reason) => Attempt::Lost(reason),
        BackendError::Refused(reason) | BackendError::TimedOut(reason) => Attempt::Failed(reason),
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

/// `<data>/users/<user>/output`, if the user name is a plain folder name
/// (the rule is [`crate::auth::valid_user_name`]).
pub fn user_output_dir(data_dir: &Path, user: &str) -> Option<PathBuf> {
    crate::auth::valid_user_name(user).then(|| data_dir.join("users").join(user).join("output"))
}

fn write_file(folder: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(folder)?;
    let mut tmp = tempfile::NamedTempFile::new_in(folder)?;
    tmp.write_all(bytes)?;
    tmp.persist(folder.join(name)).map_err(|e| e.error)?;
    Ok(())
}
