//! The OpenAPI document of the operator's API, served at
//! `GET /admin/api/openapi.json` (behind the admin login) and kept in the
//! repository as `docs/admin-openapi.json`.
//!
//! Policy:
//! - Each handler carries its own `#[utoipa::path]` (method, path,
//!   parameters, body, answers); [`AdminApi`] lists them all, with the
//!   schemas of the request bodies and of the answers whose shape is
//!   stable. Answers built ad hoc are described as objects.
//! - Every `/admin/api` operation needs HTTP Basic Auth with the admin
//!   role; [`AdminLogin`] adds the scheme and the login layer's answers
//!   (401, 403, 429, 503) to each of them, so a handler lists only its own.
//!   `/metrics`, `/healthz` and `/readyz` need no login.
//! - The test `the_openapi_document_is_the_one_in_the_repo_and_covers_every_route`
//!   (in `host/tests/admin_api.rs`) compares the served document with the
//!   file and the router's routes with the document's paths; regenerate the
//!   file with `COMFYUME_BLESS=1 cargo test -p comfyume --test admin_api
//!   openapi`.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": "a sentence saying what went wrong"}`.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong, in a sentence.
    pub error: String,
}

/// Raw bytes (an uploaded component, the export's zip).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// A priority class (`instructor` goes first, `low` last).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriorityClass {
    /// The instructor's lane.
    Instructor,
    /// Ahead of the usual jobs.
    High,
    /// The default.
    Normal,
    /// After everyone else.
    Low,
}

/// The role of a new account (an admin account is refused: 403).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountRole {
    /// A workshop attendee.
    Attendee,
    /// The instructor.
    Instructor,
    /// Refused here: admins are made with `comfyume user`.
    Admin,
}

/// The workshop session's state.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStateName {
    /// Attendees submit and jobs run.
    Open,
    /// No new jobs; queued and running ones finish.
    Drain,
    /// No new jobs and nothing dispatched.
    Closed,
}

/// Where a job is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStateName {
    /// Waiting for a GPU.
    Queued,
    /// Picked by the dispatcher.
    Leased,
    /// Sent to a backend.
    Dispatched,
    /// On a GPU.
    Running,
    /// Done, with outputs.
    Succeeded,
    /// Done, without success.
    Failed,
    /// Cancelled by its owner or the operator.
    Cancelled,
    /// Given up after its attempts.
    Dead,
}

/// The operator's summary of a job.
#[derive(Serialize, ToSchema)]
pub struct JobSummary {
    /// The job number.
    pub id: u64,
    /// ComfyUI's prompt id.
    pub prompt_id: String,
    /// The attendee who submitted it.
    pub user: String,
    /// Where the job is.
    pub state: JobStateName,
    /// Its priority class.
    pub priority: PriorityClass,
    /// The workflow's kind (e.g. `flux`).
    pub workflow_kind: String,
    /// The pool it ran on, once it has one.
    pub pool: Option<String>,
    /// Dispatch attempts.
    pub attempts: u32,
    /// Attempts lost to a reclaimed (spot) GPU.
    pub lost_to_reclaim: u32,
    /// A cancel was asked while it ran.
    pub cancel_requested: bool,
    /// Progress while running (0 to 1).
    pub progress: Option<f64>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// GPU-seconds billed.
    pub gpu_seconds: f64,
    /// When it was submitted (ms since the epoch).
    pub created_at_ms: u64,
    /// When it was first sent to a GPU (ms since the epoch), if it was.
    pub started_at_ms: Option<u64>,
    /// When it last changed (ms since the epoch).
    pub updated_at_ms: u64,
}

/// `GET /admin/api/jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
}

/// `POST /admin/api/jobs/{id}/cancel`.
#[derive(Serialize, ToSchema)]
pub struct CancelAnswer {
    /// `cancelled`, `requested` (it is running; the backend is told) or
    /// `already_finished`.
    pub outcome: String,
}

/// One account as the operator sees it.
#[derive(Serialize, ToSchema)]
pub struct AttendeeRow {
    /// The login name.
    pub name: String,
    /// `attendee`, `instructor` or `admin`.
    pub role: String,
    /// The account cannot log in.
    pub disabled: bool,
    /// Open editor websockets.
    pub connected: u32,
    /// Jobs waiting.
    pub pending: u32,
    /// Jobs on a GPU.
    pub running: u32,
    /// Jobs finished.
    pub done: u64,
    /// GPU-seconds used.
    pub gpu_seconds: f64,
    /// The priority class, once the account has submitted or been capped.
    pub priority: Option<PriorityClass>,
    /// Most jobs waiting at once.
    pub max_pending: Option<u32>,
    /// Most jobs running at once.
    pub max_running: Option<u32>,
}

/// `GET /admin/api/attendees`.
#[derive(Serialize, ToSchema)]
pub struct AttendeeList {
    /// Every account in the users file.
    pub attendees: Vec<AttendeeRow>,
}

/// A login with its generated password, shown once.
#[derive(Serialize, ToSchema)]
pub struct NewPassword {
    /// The login name.
    pub name: String,
    /// The generated password (never stored or logged in clear).
    pub password: String,
}

/// `POST /admin/api/attendees`.
#[derive(Serialize, ToSchema)]
pub struct CreatedAccounts {
    /// The new accounts with their passwords.
    pub created: Vec<NewPassword>,
    /// Names that existed already (left as they were).
    pub skipped: Vec<String>,
}

/// `GET /admin/api/settings`: what is in force.
#[derive(Serialize, ToSchema)]
pub struct SettingsView {
    /// How long a job may run on a GPU.
    pub job_wait_secs: u64,
    /// The day's budget, if any.
    pub budget: Option<f64>,
    /// Why dispatch is held (e.g. the budget is spent), if it is.
    pub dispatch_held: Option<String>,
    /// What the operator changed from the configuration.
    pub overrides: super::control::Settings,
}

/// `GET /admin/api/session`.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// Where the session is.
    pub state: SessionStateName,
}

/// Jobs, GPU-seconds and cost of one attendee, one pool or the day.
#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    /// The pool (in `pools`) or attendee (in `users`); absent in `total`.
    pub pool: Option<String>,
    /// The attendee (in `users`).
    pub user: Option<String>,
    /// Finished jobs that used a GPU.
    pub jobs: u64,
    /// GPU-seconds billed.
    pub gpu_seconds: f64,
    /// GPU-seconds × the pool's price per hour / 3600.
    pub cost: f64,
}

/// The budget's state.
#[derive(Serialize, ToSchema)]
pub struct BudgetView {
    /// The budget, if one is set.
    pub limit: Option<f64>,
    /// The day's cost so far.
    pub spent: f64,
    /// The budget is spent.
    pub reached: bool,
    /// Why dispatch is held, if it is.
    pub dispatch_held: Option<String>,
}

/// `GET /admin/api/costs`.
#[derive(Serialize, ToSchema)]
pub struct CostsView {
    /// The whole day.
    pub total: UsageRow,
    /// By pool.
    pub pools: Vec<UsageRow>,
    /// By attendee.
    pub users: Vec<UsageRow>,
    /// Pools jobs ran on that have no configured price any more.
    pub unpriced_pools: Vec<String>,
    /// The budget.
    pub budget: BudgetView,
}

/// `GET /admin/api/plugins`.
#[derive(Serialize, ToSchema)]
pub struct PluginsView {
    /// Every slot and its active plugin, history (by hash) and health.
    pub slots: Vec<crate::plugins::slot::SlotStatus>,
    /// Every stored version: any of them can be activated by hash.
    pub versions: Vec<crate::plugins::StoredVersion>,
    /// The order validators are asked in, and what a disabled one means.
    pub validators: crate::plugins::ValidatorPolicy,
    /// `{"in_use", "pool"}`: plugin instances alive now, and the pool size.
    pub instances: serde_json::Value,
    /// The shadow run's counts and recent disagreements.
    pub shadow: serde_json::Value,
}

/// `POST /admin/api/plugins` (201).
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    /// SHA-256 of the component: activate it by this.
    pub hash: String,
    /// `name@version`.
    pub label: String,
    /// The slot kind it fills (e.g. `scheduler`).
    pub kind: String,
    /// Bytes.
    pub size: u64,
    /// The check's report.
    pub report: serde_json::Value,
    /// What failed the check, when admitted with `?override=unchecked`.
    pub check_failed: Option<String>,
}

/// `POST /admin/api/plugins/{hash}/activate` and
/// `POST /admin/api/plugins/slots/{slot}/rollback`.
#[derive(Serialize, ToSchema)]
pub struct SlotChange {
    /// The slot.
    pub slot: String,
    /// The active plugin now (its hash after activate, `name@version` after
    /// rollback).
    pub active: String,
    /// Its hash (after rollback).
    pub hash: Option<String>,
}

/// The document: every path of the operator's API and the probes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ComfyUMe operator API",
        version = "1",
        description = "The operator's JSON API under /admin/api (HTTP Basic Auth, admin role), and the unauthenticated /metrics, /healthz and /readyz. Errors are {\"error\": \"sentence\"}."
    ),
    paths(
        super::jobs::list,
        super::jobs::detail,
        super::jobs::cancel,
        super::jobs::reprioritise,
        super::jobs::retry,
        super::attendees::list,
        super::accounts::create,
        super::accounts::change,
        super::accounts::reset_password,
        super::plugins::status,
        super::plugins::upload,
        super::plugins::activate,
        super::plugins::rollback,
        super::plugins::remove_slot,
        super::plugins::set_shadow,
        super::plugins::clear_shadow,
        super::control::pools,
        super::control::switch_pool,
        super::prewarm::prewarm,
        super::prewarm::release,
        super::control::settings,
        super::control::change_settings,
        super::control::session,
        super::control::switch_session,
        super::costs::render,
        super::export::export,
        super::export::status,
        super::backup::status,
        super::backup::now,
        super::dashboard::feed::snapshot,
        super::dashboard::feed::events,
        super::metrics::render,
        super::metrics::healthz,
        super::metrics::readyz,
        document,
    ),
    components(schemas(
        ApiErrorBody,
        Binary,
        PriorityClass,
        AccountRole,
        SessionStateName,
        JobStateName,
        JobSummary,
        JobList,
        CancelAnswer,
        AttendeeRow,
        AttendeeList,
        NewPassword,
        CreatedAccounts,
        SettingsView,
        SessionView,
        UsageRow,
        BudgetView,
        CostsView,
        PluginsView,
        Uploaded,
        SlotChange,
        super::backup::BackupReport,
    )),
    modifiers(&AdminLogin),
    tags(
        (name = "jobs", description = "Every attendee's jobs"),
        (name = "attendees", description = "Accounts, caps and priority classes"),
        (name = "plugins", description = "Upload, check, activate, roll back, shadow"),
        (name = "control", description = "Pools, live settings and the session"),
        (name = "costs", description = "The day's cost and the budget"),
        (name = "backups", description = "Outputs and job history copied to an S3-compatible bucket"),
        (name = "export", description = "The end-of-day outputs zip"),
        (name = "dashboard", description = "The dashboard's live feed"),
        (name = "probes", description = "Metrics and health, without a login"),
    )
)]
pub struct AdminApi;

/// Adds HTTP Basic Auth and the login layer's answers to every
/// `/admin/api` operation.
struct AdminLogin;

impl Modify for AdminLogin {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("A ComfyUMe login with the admin role"))
                    .build(),
            ),
        );
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                .build()
        };
        let login_answers = [
            (
                "401",
                "NoLogin",
                "No or wrong credentials (with a WWW-Authenticate challenge)",
            ),
            (
                "403",
                "NotAdmin",
                "The login is not an admin, is disabled, or the request came from another site",
            ),
            (
                "429",
                "TooManyLogins",
                "Too many failed logins from this address (with Retry-After)",
            ),
            (
                "503",
                "Unavailable",
                "The job store or the users file is unavailable (with Retry-After)",
            ),
        ];
        for (_, name, description) in login_answers {
            components.responses.insert(
                name.to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/json", error())
                        .build(),
                ),
            );
        }
        let basic = utoipa::openapi::security::SecurityRequirement::new::<&str, [&str; 0], &str>(
            "basic",
            [],
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/admin/api") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![basic.clone()]);
                for (status, name, _) in login_answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// `GET /admin/api/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/admin/api/openapi.json",
    operation_id = "openapi_document",
    tag = "control",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(AdminApi::openapi())
}
