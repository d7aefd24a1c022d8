//! Progress callbacks: how a GPU worker behind a load balancer reports step
//! progress to the host and learns that its job was cancelled.
//!
//! Why: a Verda job is one asynchronous request; the host sees nothing of
//! it until the result is stored, and there is no way to address the one
//! replica that runs it. So the host hands the worker a URL on itself
//! (`<dispatch.callback_url>/internal/progress/<prompt id>`) and a bearer
//! token for that job only (an HMAC of the prompt id under a secret made at
//! start). The worker POSTs `{"value","max"}` on every step and every few
//! seconds while it waits; the answer `{"cancel": true}` tells it to stop.
//!
//! Policy: a report for a job this host is not following is refused with
//! 404 (the worker keeps running: the host that follows it after a
//! take-over will answer); a wrong token is 401; nothing a worker sends can
//! change any job but its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::backend::Callback;

/// Why a report was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CallbackError {
    /// The token is not this job's.
    #[error("the token is not valid for this job")]
    BadToken,
    /// This host does not follow the job (finished, or followed elsewhere).
    #[error("this host is not following that job")]
    Unknown,
}

struct Live {
    progress: mpsc::UnboundedSender<(u32, u32)>,
    cancel: std::sync::Arc<AtomicBool>,
}

/// The host side of the callbacks.
pub struct Callbacks {
    base_url: Option<String>,
    key: [u8; 32],
    live: Mutex<HashMap<String, Live>>,
}

/// A job's open callback, held by the dispatcher while it follows the job.
pub struct Watch {
    /// What to tell the worker.
    pub callback: Callback,
    /// Reports as they arrive.
    pub progress: mpsc::UnboundedReceiver<(u32, u32)>,
    /// Set to make the next report answer `cancel`.
    pub cancel: std::sync::Arc<AtomicBool>,
}

impl Callbacks {
    /// Callbacks to `base_url` (this host as the GPU side reaches it), or
    /// none when it is not configured.
    pub fn new(base_url: Option<String>) -> Self {
        let mut key = [0u8; 32];
        // Fresh per process: a restart invalidates old tokens, and the host
        // that takes a job over issues a new one with the next attempt.
        for chunk in key.chunks_mut(16) {
            chunk.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        Callbacks {
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            key,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, prompt_id: &str) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(prompt_id.as_bytes());
        mac
    }

    /// Starts listening for the job's reports; `None` when no callback URL
    /// is configured.
    pub fn open(&self, prompt_id: &str) -> Option<Watch> {
        let base = self.base_url.as_ref()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(
            prompt_id.to_string(),
            Live {
                progress: tx,
                cancel: cancel.clone(),
            },
        );
        Some(Watch {
            callback: Callback {
                url: format!("{base}/internal/progress/{prompt_id}"),
                token: hex::encode(self.mac(prompt_id).finalize().into_bytes()),
            },
            progress: rx,
            cancel,
        })
    }

    /// Stops listening for the job.
    pub fn close(&self, prompt_id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(prompt_id);
    }

    /// A worker's report; `Ok(true)` tells it to stop the job.
    pub fn report(
        &self,
        prompt_id: &str,
        token: &str,
        value: u32,
        max: u32,
    ) -> Result<bool, CallbackError> {
        let token = hex::decode(token).map_err(|_| CallbackError::BadToken)?;
        // Constant-time comparison.
        self.mac(prompt_id)
            .verify_slice(&token)
            .map_err(|_| CallbackError::BadToken)?;
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let job = live.get(prompt_id).ok_or(CallbackError::Unknown)?;
        if max > 0 {
            let _ = job.progress.send((value.min(max), max));
        }
        Ok(job.cancel.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_jobs_own_token_reports_and_cancel_is_relayed() {
        let callbacks = Callbacks::new(Some("http://host:8188/".into()));
        let a = "00000000-0000-4000-8000-00000000000a";
        let b = "00000000-0000-4000-8000-00000000000b";
        let mut watch = callbacks.open(a).unwrap();
        assert_eq!(
            watch.callback.url,
            format!("http://host:8188/internal/progress/{a}")
        );
        assert_eq!(callbacks.report(a, &watch.callback.token, 3, 20), Ok(false));
        assert_eq!(watch.progress.try_recv().unwrap(), (3, 20));
        assert_eq!(
            callbacks.report(b, &watch.callback.token, 1, 2),
            Err(CallbackError::BadToken)
        );
        assert_eq!(
            callbacks.report(a, "zz", 1, 2),
            Err(CallbackError::BadToken)
        );
        watch.cancel.store(true, Ordering::SeqCst);
        assert_eq!(callbacks.report(a, &watch.callback.token, 4, 20), Ok(true));
        callbacks.close(a);
        assert_eq!(
            callbacks.report(a, &watch.callback.token, 5, 20),
            Err(CallbackError::Unknown)
        );
        assert!(Callbacks::new(None).open(a).is_none());
    }
}
