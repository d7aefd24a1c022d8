//! Dispatch to the GPUs.
//!
//! - [`dispatcher`]: the loop that releases jobs to pools with free
//!   capacity, as the scheduler and selector plugins decide; [`running`]
//!   runs one job to its recorded outcome; [`pool`] keeps each pool's live
//!   counters; [`recovery`](crate::queue::recovery) re-attaches after a crash.
//! - [`backend`]: the one seam to a GPU pool, with two kinds:
//!   [`comfyui_backend`] (a ComfyUI reached directly, also the rehearsal
//!   mode) and [`verda`] (serverless containers running `comfyume worker`);
//!   [`verda_scaling`] raises a deployment's minimum replicas to pre-warm;
//!   [`verda_deploy`] and [`verda_apply`] create and update the deployments
//!   themselves (`comfyume verda apply`).
//! - [`comfyui`]: the ComfyUI wire protocol and client; [`rehearsal`]: a
//!   ComfyUI without a GPU and a fake Verda gateway, for rehearsals and
//!   tests.
//! - [`inputs`] and [`outputs`]: the files a job reads from and writes to
//!   its owner's folder; [`callback`]: progress and cancel from a worker.

pub mod backend;
pub mod callback;
pub mod comfyui;
pub mod comfyui_backend;
pub mod dispatcher;
pub mod inputs;
pub mod outputs;
pub mod pool;
pub mod pools;
pub mod rehearsal;
mod running;
pub mod verda;
pub mod verda_apply;
pub mod verda_deploy;
pub mod verda_scaling;
mod verda_watch;
