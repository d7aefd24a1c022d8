//! ComfyUMe: one Rust host for a whole ComfyUI workshop.
//!
//! Attendees use the real ComfyUI editor behind their own login; every prompt
//! goes into one durable queue; sandboxed WebAssembly plugins decide which job
//! runs next, whether a workflow may run at all, and on which GPU pool. See
//! `README.md` for the tour and `docs/` for operators and plugin authors.
//!
//! Modules, in the order a job meets them:
//! - [`config`]: layered configuration (defaults, TOML, environment).
//! - [`auth`]: attendee logins: the users file, Basic auth, the axum layer.
//! - [`plugins`]: the wasmtime runtime, the plugin registry and the built-ins.
//! - [`queue`]: the durable job queue (embedded or Redis).
//! - [`dispatch`]: the dispatcher, the backends, the ComfyUI client.
//! - [`front`]: the attendee front: the editor's files, the ComfyUI API per user, `/ws`.
//! - [`paths`]: names from outside resolved inside one folder only.
//! - [`server`]: the HTTP server (`comfyume serve`).
//! - [`session`]: the workshop session switch (open, drain, closed).
//! - [`admin`]: the operator's API (`/admin/api`) and `/metrics`.
//! - [`observe`]: what the host measures (histograms and counters for `/metrics`).
//! - [`worker`]: the GPU-side sidecar (`comfyume worker`).
//! - [`models`]: the workshop's model files: manifest, check, `models sync`.
//! - [`rehearse`]: the workshop day played with fake GPUs and faults (`comfyume rehearse`).
//! - [`cli`]: the `comfyume` command line.
//! - [`tls`]: the TLS provider every outgoing HTTPS client needs.

#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod front;
pub mod models;
pub mod observe;
pub mod paths;
pub mod plugins;
pub mod queue;
pub mod rehearse;
pub mod server;
pub mod session;
pub mod tls;
pub mod worker;
