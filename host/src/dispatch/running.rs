//! One claimed job, from the submit to its recorded outcome.
//!
//! Policy:
//! - **Record before run.** The backend job id is recorded before the
//!   submit when we choose it (ComfyUI takes our prompt id) and right after
//!   it when the backend chooses it (Verda's inference id), so a crash
//!   re-attaches to the same GPU run instead of paying for a second. Once
//!   the backend has the job, an unreachable store is waited for (up to a
//!   lease) rather than the job requeued: the GPU run is under way, and a
//!   requeue would pay for a second one.
//! - **Inputs** the prompt references are read from the owner's folders
//!   and sent with the job under a folder of its own, the prompt's loaders
//!   pointed there ([`super::inputs`]).
//! - **While it runs** the lease is renewed every third of its length; a
//!   cancel asked by the owner or the operator stops the GPU work (directly,
//!   and through the worker's progress callback).
//! - **Outcomes.** Success stores the outputs in the owner's folder; a
//!   backend that is unreachable or lost the job requeues it (`attempts+1`,
//!   flagged as a reclaim on a spot pool, so the selector can prefer
//!   on-demand); a refusal or a timeout fails it with the reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;

use super::backend::{Backend, BackendError, Submission};
use super::comfyui::protocol::Outcome;
use super::dispatcher::Dispatcher;
use super::outputs::{self, StoreFailure};
use super::pool::Pool;
use crate::queue::{BackendRef, Job, Output, Progress, Requester, StoreError};

/// How an attempt ended, when not with outputs. The `&'static str` is the
/// cause as `/metrics` counts it.
pub(super) enum Attempt {
    Cancelled,
    Failed(&'static str, String),
    Lost(&'static str, String),
}

fn lost(e: StoreError) -> Attempt {
    Attempt::Lost("store", e.to_string())
}

fn from_backend(e: BackendError) -> Attempt {
    match e {
        BackendError::Unavailable(reason) => Attempt::Lost("unavailable", reason),
        BackendError::Refused(reason) => Attempt::Failed("refused", reason),
        BackendError::TimedOut(reason) => Attempt::Failed("timed-out", reason),
    }
}

impl Dispatcher {
    /// Runs one claimed job to the end (or follows a re-attached one, when
    /// `reattached` holds its backend id) and records the outcome.
    pub(super) async fn run_job(&self, job: Job, pool: &Pool, reattached: Option<String>) {
        let owner = self.config.host.as_str();
        let started = Instant::now();
        let result = match reattached {
            Some(backend_id) => self.follow(&job, pool, backend_id).await,
            None => match self.start(&job, pool).await {
                Ok(backend_id) => self.follow(&job, pool, backend_id).await,
                Err(e) => Err(e),
            },
        };
        let gpu_seconds = started.elapsed().as_secs_f64();
        let info = pool.backend().info();
        let (outcome, cause) = match &result {
            Ok(_) => ("succeeded", None),
            Err(Attempt::Cancelled) => ("cancelled", None),
            Err(Attempt::Failed(cause, _)) => ("failed", Some(*cause)),
            Err(Attempt::Lost(cause, _)) => ("requeued", Some(*cause)),
        };
        crate::observe::recorder().job_ended(
            &job.workflow_kind,
            &info.name,
            outcome,
            cause,
            gpu_seconds,
            info.price_per_hour,
        );
        let store = &self.store;
        let recorded = match result {
            Ok(outputs) => store
                .succeed(job.id, owner, outputs, gpu_seconds)
                .await
                .map(drop),
            Err(Attempt::Cancelled) => store.cancelled(job.id, owner, gpu_seconds).await.map(drop),
            Err(Attempt::Failed(_, reason)) => {
                tracing::warn!(%reason, "job failed");
                store
                    .fail(job.id, owner, &reason, gpu_seconds)
                    .await
                    .map(drop)
            }
            Err(Attempt::Lost(_, reason)) => {
                tracing::warn!(%reason, "job lost; requeued");
                pool.fail();
                let spot = pool.backend().info().spot;
                store.requeue(job.id, owner, &reason, spot).await.map(drop)
            }
        };
        if let Err(e) = recorded {
            // The lease was taken over (this host was presumed dead): the
            // new owner follows the same backend job.
            tracing::warn!(job = job.id, error = %e, "could not record the outcome");
        }
    }

    /// Reads the prompt and its inputs, records the backend id and submits.
    async fn start(&self, job: &Job, pool: &Pool) -> Result<String, Attempt> {
        let owner = self.config.host.as_str();
        let backend = pool.backend();
        let payload: Value = match self.store.payload(job.id).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Attempt::Failed("prompt", format!("stored prompt unreadable: {e}")))?,
            Err(e) => return Err(lost(e)),
        };
        let user_dir = outputs::user_dir(&self.config.data_dir, &job.user).ok_or_else(|| {
            Attempt::Failed(
                "inputs",
                format!("user name {:?} cannot be a folder", job.user),
            )
        })?;
        let prompt = payload.get("prompt").unwrap_or(&payload);
        let staged = super::inputs::stage(
            &user_dir,
            prompt,
            &job.prompt_id,
            self.config.max_input_bytes,
        )
        .await
        .map_err(|e| Attempt::Failed("inputs", e.to_string()))?;
        // The prompt as the GPU gets it: loaders read this job's own copies.
        let payload = match payload {
            Value::Object(mut body) if body.contains_key("prompt") => {
                body.insert("prompt".into(), staged.prompt);
                Value::Object(body)
            }
            _ => staged.prompt,
        };
        let inputs = staged.files;
        let client_id = self.client_id();
        let watch = self.callbacks.open(&job.prompt_id);
        let callback = watch.as_ref().map(|w| w.callback.clone());
        let submission = Submission {
            prompt_id: &job.prompt_id,
            client_id: &client_id,
            payload: &payload,
            inputs: &inputs,
            job_wait: self.job_wait(),
            callback: callback.as_ref(),
        };
        if let Some(watch) = watch {
            self.watches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(job.prompt_id.clone(), watch);
        }
        let record = |backend_id: String| BackendRef {
            pool: backend.info().name.clone(),
            job_id: backend_id,
        };
        let submitted = match backend.chosen_id(&job.prompt_id) {
            Some(chosen) => {
                self.store
                    .dispatched(job.id, owner, record(chosen.clone()))
                    .await
                    .map_err(lost)?;
                backend
                    .submit(submission)
                    .await
                    .map(|_| chosen)
                    .map_err(from_backend)
            }
            None => match backend.submit(submission).await {
                Ok(id) => self
                    .record_dispatch(job, record(id.clone()))
                    .await
                    .map(|()| id)
                    .map_err(lost),
                Err(e) => Err(from_backend(e)),
            },
        };
        if submitted.is_err() {
            self.close_watch(&job.prompt_id);
        }
        submitted
    }

    /// Records the backend id of a job the backend has accepted, waiting
    /// out an unreachable store for up to a lease (a Redis restart): only a
    /// recorded id lets recovery re-attach instead of running it again.
    async fn record_dispatch(&self, job: &Job, backend: BackendRef) -> Result<(), StoreError> {
        let owner = self.config.host.as_str();
        let give_up = Instant::now() + self.config.lease;
        loop {
            match self.store.dispatched(job.id, owner, backend.clone()).await {
                Err(StoreError::Unavailable(e)) if Instant::now() < give_up => {
                    tracing::warn!(job = job.id, backend_id = %backend.job_id, error = %e,
                        "cannot record the backend id yet; the GPU run goes on, trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                done => return done.map(drop),
            }
        }
    }

    fn close_watch(&self, prompt_id: &str) {
        self.callbacks.close(prompt_id);
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(prompt_id);
    }

    /// Follows the backend job to its end, keeping the lease and watching
    /// for a cancel meanwhile, then stores the outputs.
    async fn follow(
        &self,
        job: &Job,
        pool: &Pool,
        backend_id: String,
    ) -> Result<Vec<Output>, Attempt> {
        let owner = self.config.host.as_str();
        let backend = pool.backend().clone();
        match self.store.running(job.id, owner, None).await {
            Ok(_) => {}
            // The backend id is recorded and the run is under way: an
            // unreachable store only delays the state's change, and the
            // lease keeper (or recovery) carries on from here.
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(job = job.id, error = %e, "cannot mark the job running; following it anyway");
            }
            Err(e) => return Err(lost(e)),
        }
        let watch = self
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job.prompt_id);
        let (callback_progress, callback_cancel) = match watch {
            Some(w) => (Some(w.progress), Some(w.cancel)),
            None => (None, None),
        };
        let keeper = self.keep_lease(job.id, backend.clone(), backend_id.clone(), callback_cancel);
        // Progress from either source (the backend's own stream, or the
        // worker's callback) goes to the store, which publishes it.
        let progress_store = self.store.clone();
        let progress_owner = self.config.host.clone();
        let id = job.id;
        let record_progress = move |value: u32, max: u32| {
            let (store, owner) = (progress_store.clone(), progress_owner.clone());
            tokio::spawn(async move {
                let _ = store
                    .running(id, &owner, Some(Progress { value, max }))
                    .await;
            });
        };
        let relay = callback_progress.map(|mut rx| {
            let record = record_progress.clone();
            tokio::spawn(async move {
                while let Some((value, max)) = rx.recv().await {
                    record(value, max);
                }
            })
        });
        let mut progress = record_progress;
        let client_id = self.client_id();
        let outcome = backend
            .wait(&backend_id, &client_id, self.job_wait(), &mut progress)
            .await;
        keeper.abort();
        if let Some(relay) = relay {
            relay.abort();
        }
        self.close_watch(&job.prompt_id);
        let cancel_requested = self
            .store
            .get(job.id, Requester::Admin)
            .await
            .is_ok_and(|j| j.cancel_requested);
        let outcome = match outcome {
            // Stopped as asked: a prompt deleted from a ComfyUI queue
            // before it ran leaves no trace, which reads as forgotten.
            Err(_) if cancel_requested => return Err(Attempt::Cancelled),
            other => other.map_err(from_backend)?,
        };
        let result = match outcome {
            Outcome::Success(nodes) => outputs::store(
                &self.config.data_dir,
                job,
                backend.as_ref(),
                &backend_id,
                &nodes,
            )
            .await
            .map_err(|e| match e {
                StoreFailure::Failed(reason) => Attempt::Failed("outputs", reason),
                StoreFailure::Lost(reason) => Attempt::Lost("outputs", reason),
            }),
            Outcome::Failed(_) if cancel_requested => Err(Attempt::Cancelled),
            Outcome::Failed(reason) => Err(Attempt::Failed("execution", reason)),
            Outcome::Pending => Err(Attempt::Lost(
                "no-result",
                "the backend reported no result".into(),
            )),
        };
        backend.forget(&backend_id);
        result
    }

    /// Renews the lease every third of its length and stops the GPU work
    /// once a cancel is asked, until aborted.
    fn keep_lease(
        &self,
        id: crate::queue::JobId,
        backend: Arc<dyn Backend>,
        backend_id: String,
        callback_cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> tokio::task::JoinHandle<()> {
        let (store, host, lease) = (
            self.store.clone(),
            self.config.host.clone(),
            self.config.lease,
        );
        tokio::spawn(async move {
            let mut cancelled = false;
            // A cancel is an event on the job: react at once rather than at
            // the next renewal (GPU time is billed while we wait).
            let mut events = store.events();
            let mut feed_open = true;
            let mut renew_at = tokio::time::Instant::now() + lease / 3;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(renew_at) => {
                        let _ = store.renew(id, &host, lease).await;
                        renew_at = tokio::time::Instant::now() + lease / 3;
                    }
                    event = events.recv(), if feed_open => match event {
                        Ok(event) if event.id != id => continue,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            feed_open = false;
                            continue;
                        }
                    },
                }
                let wants_cancel = store
                    .get(id, Requester::Admin)
                    .await
                    .is_ok_and(|j| j.cancel_requested);
                if wants_cancel && !cancelled {
                    cancelled = true;
                    if let Some(flag) = &callback_cancel {
                        flag.store(true, Ordering::SeqCst);
                    }
                    if let Err(e) = backend.cancel(&backend_id).await {
                        tracing::warn!(job = id, error = %e, "could not stop the GPU work");
                    }
                }
            }
        })
    }
}
