//! The configuration sections and their defaults.
//!
//! Every field is documented in `config/comfyume.toml`; keep the two in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::plugins::{DisabledValidator, Unclaimed};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[plugins]`
    pub plugins: PluginsConfig,
    /// `[queue]`
    pub queue: QueueConfig,
    /// `[dispatch]`
    pub dispatch: DispatchConfig,
    /// `[verda]`
    pub verda: VerdaConfig,
    /// `[timeouts]`
    pub timeouts: TimeoutsConfig,
    /// `[frontend]`
    pub frontend: FrontendConfig,
    /// `[attendees]`: what the attendee API accepts.
    pub attendees: AttendeesConfig,
    /// `[backup]`: outputs and job history copied to an S3-compatible bucket.
    pub backup: BackupConfig,
    /// `[pools.<name>]`: the GPU pools. None configured means one rehearsal
    /// pool (or a `local` ComfyUI pool when `dispatch.comfyui_url` is set).
    pub pools: std::collections::BTreeMap<String, PoolConfig>,
}

/// What serves a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// A ComfyUI server reached directly at `url`.
    Comfyui,
    /// A ComfyUI without a GPU, started by the host (rehearsals, demos).
    Rehearsal,
    /// Verda serverless containers running `comfyume worker`.
    Verda,
}

/// `[pools.<name>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `comfyui`, `rehearsal` or `verda`.
    pub kind: PoolKind,
    /// The ComfyUI server (`comfyui` pools).
    #[serde(default)]
    pub url: Option<String>,
    /// The Verda deployment's name (`verda` pools).
    #[serde(default)]
    pub deployment: Option<String>,
    /// The Verda inference key for this pool (`verda` pools; default
    /// `verda.api_key`). Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The GPU model, e.g. `H200`; the selector plugin reads it.
    #[serde(default = "default_gpu")]
    pub gpu: String,
    /// `spot` or `on-demand`.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Jobs in flight at most.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Price per GPU hour (costs).
    #[serde(default)]
    pub price_per_hour: f64,
    /// Rehearsal pools: delay before the first job, in ms.
    #[serde(default)]
    pub cold_start_ms: u64,
    /// Rehearsal pools: time per sampling step, in ms.
    #[serde(default = "default_step_ms")]
    pub step_ms: u64,
    /// `verda` pools: minimum replicas while pre-warmed.
    #[serde(default = "default_prewarm")]
    pub prewarm_replicas: u32,
}

fn default_prewarm() -> u32 {
    1
}

fn default_gpu() -> String {
    "unknown".into()
}

fn default_tier() -> String {
    "on-demand".into()
}

fn default_capacity() -> u32 {
    1
}

fn default_step_ms() -> u64 {
    200
}

impl PoolConfig {
    /// The pool used when none is configured: a rehearsal backend.
    pub fn rehearsal() -> Self {
        PoolConfig {
            kind: PoolKind::Rehearsal,
            url: None,
            deployment: None,
            api_key: None,
            gpu: "rehearsal".into(),
            tier: "on-demand".into(),
            capacity: 2,
            price_per_hour: 0.0,
            cold_start_ms: 2000,
            step_ms: 200,
            prewarm_replicas: 1,
        }
    }
}

/// `[server]`: where the host listens and keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address (`--listen`). Default `127.0.0.1:8188`, ComfyUI's port.
    pub listen: SocketAddr,
    /// Data folder (`--data`): users, queue journal, outputs, plugin cache.
    pub data_dir: PathBuf,
    /// PEM certificate chain: with `tls_key`, the host serves HTTPS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (for the login
    /// rate limits); every other peer's header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Origins (e.g. `https://workshop.example.org`) whose pages may act on
    /// this host besides its own; see `server::origin`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Seconds a client may take to send a request's head; also how long
    /// an idle kept-alive connection stays open.
    pub header_timeout_secs: u64,
    /// Longest pause, in seconds, while a request body arrives.
    pub body_timeout_secs: u64,
    /// Connections one client address may hold open (trusted proxies are
    /// exempt).
    pub max_connections_per_address: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8188)),
            data_dir: PathBuf::from("./data"),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections_per_address: 2048,
        }
    }
}

/// `[plugins]`: which plugins decide, and the sandbox's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Built-in scheduler active at start: `fifo`, `round-robin`, `priority`, `fair-share`.
    pub scheduler: String,
    /// Built-in selector active at start: `h200-spot`, `b300-on-demand`.
    pub selector: String,
    /// What to do with a graph no validator claims: `accept` or `refuse`.
    pub unclaimed: Unclaimed,
    /// Deadline per plugin call, in milliseconds.
    pub deadline_ms: u64,
    /// Memory cap per plugin call, in MiB.
    pub memory_mib: usize,
    /// Failures within `failure_window_secs` that disable a plugin.
    pub max_failures: u32,
    /// The failure window, in seconds.
    pub failure_window_secs: u64,
    /// Retry a disabled plugin after this many seconds (a circuit breaker's
    /// half-open state: one more failure disables it again). 0, the
    /// default, keeps a disabled plugin off until the operator acts.
    pub retry_disabled_after_secs: u64,
    /// The order in which validators are asked, by validator name (e.g.
    /// `["ltx2", "flux2-klein"]`); validators not listed follow, by name.
    pub validator_order: Vec<String>,
    /// What a disabled validator means for the prompts it would have been
    /// asked about: `skip` (it is passed over; the next validators and then
    /// `unclaimed` decide) or `refuse` (while any validator is disabled,
    /// prompts no other validator claims are refused).
    pub disabled_validator: DisabledValidator,
    /// Plugin instances alive at once (the pooling allocator's size).
    pub max_instances: u32,
    /// Instances one slot (the scheduler, the selector, each validator) may
    /// hold at once: its share of `max_instances`. A call beyond it waits
    /// briefly, then the built-in default decides without counting a
    /// failure. The shadow scheduler always gets one.
    pub instances_per_slot: u32,
    /// The largest memory any plugin may be configured for, in MiB.
    pub max_memory_mib: usize,
    /// `[plugins.limits.<name or slot>]`: deadline and memory cap for one
    /// plugin (by its `describe()` name) or one slot (`scheduler`,
    /// `validator`, `selector`), over `deadline_ms` / `memory_mib`. A name
    /// entry wins over a slot entry. Python and JavaScript plugins need one.
    pub limits: BTreeMap<String, PluginLimits>,
}

/// One `[plugins.limits.<name or slot>]` table; an unset key keeps the
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Deadline per call, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Memory cap per call, in MiB.
    pub memory_mib: Option<usize>,
}

impl PluginsConfig {
    /// The per-plugin limits table the registry loads plugins with.
    pub fn limits_table(&self) -> crate::plugins::LimitsTable {
        let mut table = crate::plugins::LimitsTable::uniform(crate::plugins::CallLimits {
            deadline_ms: self.deadline_ms,
            memory_mib: self.memory_mib,
        });
        for (key, limits) in &self.limits {
            table.set(key, limits.deadline_ms, limits.memory_mib);
        }
        table
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            scheduler: "fair-share".into(),
            selector: "h200-spot".into(),
            unclaimed: Unclaimed::Accept,
            deadline_ms: 250,
            memory_mib: 64,
            max_failures: 5,
            failure_window_secs: 300,
            retry_disabled_after_secs: 0,
            validator_order: Vec::new(),
            disabled_validator: DisabledValidator::Skip,
            max_instances: 64,
            instances_per_slot: 8,
            max_memory_mib: 512,
            limits: BTreeMap::new(),
        }
    }
}

/// Which job store holds the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueStore {
    /// In-process, journaled to disk under the data folder (one host).
    #[default]
    Embedded,
    /// A Redis server shared by several hosts.
    Redis,
}

/// `[queue]`: the durable job queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `embedded` (default) or `redis`.
    pub store: QueueStore,
    /// `redis://host:port/db`; required when `store = "redis"`.
    pub redis_url: Option<String>,
    /// Key prefix in Redis, so several workshops can share one server.
    pub redis_prefix: String,
    /// Dispatcher lease length in seconds (renewed while a job runs).
    pub lease_secs: u64,
    /// Default cap on one attendee's waiting jobs.
    pub max_pending: u32,
    /// Default cap on one attendee's jobs on GPUs at once.
    pub max_running: u32,
    /// Largest prompt accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Dispatch attempts before a job goes `dead`.
    pub max_attempts: u32,
    /// Lease expiries a job survives before it goes `dead`.
    pub max_recoveries: u32,
    /// Finished jobs are removed from the queue after this many hours (their
    /// output files stay). 0 keeps them forever.
    pub retention_hours: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            store: QueueStore::Embedded,
            redis_url: None,
            redis_prefix: "comfyume".into(),
            lease_secs: 30,
            max_pending: 20,
            max_running: 2,
            max_payload_bytes: 2 << 20,
            max_attempts: 5,
            max_recoveries: 3,
            retention_hours: 72,
        }
    }
}

/// Where jobs run: the predecessor's `INFERENCE_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InferenceMode {
    /// A ComfyUI server reached directly.
    #[default]
    Local,
    /// Verda serverless containers.
    Serverless,
}

/// `[dispatch]`: where jobs go.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// `local` or `serverless` (`INFERENCE_MODE`).
    pub mode: InferenceMode,
    /// The pool in use at start, e.g. `h200-spot` (`SERVERLESS_ACTIVE`).
    pub active_pool: Option<String>,
    /// A directly reachable ComfyUI server (`COMFYUI_URL`).
    pub comfyui_url: Option<String>,
    /// This host's URL as GPU workers reach it, e.g.
    /// `https://workshop.example.com`: workers POST progress to
    /// `<url>/internal/progress/<prompt id>` and learn of cancels there.
    /// Unset: no live progress from Verda, and a cancelled Verda job runs
    /// to its end on the GPU.
    pub callback_url: Option<String>,
    /// Largest total of input files one job sends to a GPU, in bytes.
    pub max_input_bytes: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            mode: InferenceMode::default(),
            active_pool: None,
            comfyui_url: None,
            callback_url: None,
            max_input_bytes: 64 << 20,
        }
    }
}

/// `[verda]`: the serverless provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerdaConfig {
    /// Inference API key (`SERVERLESS_API_KEY`). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The container gateway: `https://containers.datacrunch.io`.
    pub base_url: String,
    /// Between two status polls of a running job, in milliseconds.
    pub poll_interval_ms: u64,
    /// Largest stored result (outputs inline, base64), in MiB.
    pub max_result_mib: usize,
    /// The cold-start allowance: how long a job may wait in Verda's own
    /// queue (a cold start included) before it runs, in seconds. Each
    /// deployment's request TTL must cover it plus `timeouts.job_wait_secs`.
    pub queue_grace_secs: u64,
    /// The deployments' request TTL (`queue_message_ttl_seconds`) assumed
    /// when it cannot be read (no management credentials), in seconds; the
    /// default is Verda CLI's. With credentials each deployment's own is
    /// read at start.
    pub request_ttl_secs: u64,
    /// The worker's largest request body (its `--max-request-mib`), in MiB:
    /// a job whose prompt and inputs (base64) exceed it fails at once.
    pub worker_max_request_mib: usize,
    /// How long the gateway may fail to answer polls of a submitted job
    /// before the job is sent elsewhere, in seconds. Its run may still be
    /// on a GPU meanwhile: a shorter patience pays twice for more jobs.
    pub outage_patience_secs: u64,
    /// The management API (pre-warm): `https://api.verda.com/v1`.
    pub management_url: String,
    /// OAuth client id for the management API (none: no pre-warm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// OAuth client secret (`VERDA_CLIENT_SECRET`). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// `[verda.deploy]`: what `comfyume verda apply` deploys.
    pub deploy: super::VerdaDeployConfig,
}

impl Default for VerdaConfig {
    fn default() -> Self {
        VerdaConfig {
            api_key: None,
            base_url: "https://containers.datacrunch.io".into(),
            poll_interval_ms: 2000,
            max_result_mib: 1024,
            queue_grace_secs: 120,
            request_ttl_secs: 300,
            worker_max_request_mib: 64,
            outage_patience_secs: 120,
            management_url: "https://api.verda.com/v1".into(),
            client_id: None,
            client_secret: None,
            deploy: super::VerdaDeployConfig::default(),
        }
    }
}

/// `[timeouts]`: each layer's limit, named so none silently caps another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Submitting a job to a backend, in seconds.
    pub submit_secs: u64,
    /// Waiting for a job to finish, in seconds (live-editable by the operator).
    pub job_wait_secs: u64,
    /// One poll of a backend's status (one HTTP request), in seconds.
    pub poll_secs: u64,
    /// A ComfyUI websocket quiet this long is checked against `/history`
    /// (a missed end is found within this), in seconds.
    pub ws_idle_secs: u64,
    /// Downloading one output file from a GPU, in seconds.
    pub download_secs: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            submit_secs: 300,
            job_wait_secs: 600,
            poll_secs: 10,
            ws_idle_secs: 30,
            download_secs: 300,
        }
    }
}

/// `[frontend]`: the ComfyUI editor's static files, installed from a
/// `comfyui-frontend-package` wheel (see `front::assets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// The package version. The default is the pinned one, whose sha256 is
    /// in the code; any other version takes its sha256 from `sha256` or,
    /// failing that, from the index.
    pub version: String,
    /// The wheel's expected sha256 (hex), overriding the pin or the index.
    pub sha256: Option<String>,
    /// A PyPI-compatible index with the JSON API (`/pypi/<name>/<version>/json`).
    pub index_url: String,
    /// `comfyume serve` installs the frontend on first start when missing.
    pub auto_install: bool,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            version: crate::front::assets::PINNED.version.into(),
            sha256: None,
            index_url: "https://pypi.org".into(),
            auto_install: true,
        }
    }
}

/// `[attendees]`: the attendee API's caps and the workshop templates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttendeesConfig {
    /// Folder of UI-format workflows every attendee sees read-only under
    /// `workflows/workshop/` (relative paths are from the working folder).
    pub templates_dir: PathBuf,
    /// Largest image or mask upload, in MiB (ComfyUI's default is 100).
    pub max_upload_mib: usize,
    /// Largest uploaded image, in megapixels (width × height / 10⁶).
    pub max_upload_megapixels: u32,
    /// Largest saved workflow or user file, in KiB.
    pub max_userdata_kib: usize,
    /// Most files one attendee may keep in their user data.
    pub max_userdata_files: usize,
    /// Largest settings file per attendee, in KiB.
    pub max_settings_kib: usize,
    /// Most uploaded files one attendee may keep.
    pub max_upload_files: usize,
    /// Most bytes of uploads one attendee may keep, in MiB.
    pub max_upload_total_mib: usize,
    /// Uploads are refused while the data disk has less free, in MiB.
    pub min_free_disk_mib: usize,
    /// Most nodes in one prompt.
    pub max_prompt_nodes: usize,
    /// Most inputs over all of one prompt's nodes (links included).
    pub max_prompt_inputs: usize,
    /// Most links between nodes in one prompt.
    pub max_prompt_links: usize,
    /// Prompts one attendee may submit per minute, on average...
    pub submits_per_minute: u32,
    /// ...and at once after a pause.
    pub submit_burst: u32,
    /// One attendee's prompts the validators check at the same time.
    pub max_concurrent_checks: u32,
}

impl Default for AttendeesConfig {
    fn default() -> Self {
        AttendeesConfig {
            templates_dir: PathBuf::from("workflows/ui"),
            max_upload_mib: 100,
            max_upload_megapixels: 64,
            max_userdata_kib: 4096,
            max_userdata_files: 500,
            max_settings_kib: 256,
            max_upload_files: 500,
            max_upload_total_mib: 2048,
            min_free_disk_mib: 1024,
            max_prompt_nodes: 1000,
            max_prompt_inputs: 20_000,
            max_prompt_links: 10_000,
            submits_per_minute: 60,
            submit_burst: 20,
            max_concurrent_checks: 2,
        }
    }
}

/// A secret string: deserialises normally, prints as `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[backup]`: copies of the outputs and the job history in an
/// S3-compatible bucket (Cloudflare R2 in production).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The bucket (none: no backups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// The S3 endpoint, e.g. `https://<account>.r2.cloudflarestorage.com`
    /// (none: AWS S3 in `region`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (`auto` for R2).
    pub region: String,
    /// Access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Secret access key (`COMFYUME_BACKUP__SECRET_ACCESS_KEY`). Never logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Key prefix in the bucket.
    pub prefix: String,
    /// Minutes between scheduled backups (0: only on demand).
    pub interval_minutes: u64,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            bucket: None,
            endpoint: None,
            region: "auto".into(),
            access_key_id: None,
            secret_access_key: None,
            prefix: "comfyume".into(),
            interval_minutes: 30,
        }
    }
}
