//! The world a rehearsal runs in: a `redis-server` (when the queue is
//! Redis), one fake Verda gateway in front of every pool's replicas, and
//! `comfyume serve` processes, each killable with SIGKILL and restartable.
//!
//! Hosts are real processes of this same binary, so a kill is a real
//! kill -9: no destructor runs, leases are left to lapse, in-flight HTTP
//! connections are cut. The GPU side lives in this process (it is a fake
//! either way) and keeps counting runs across host deaths.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::Plan;
use crate::auth::{Role, UsersFile, hash_password};
use crate::dispatch::rehearsal::RehearsalConfig;
use crate::dispatch::rehearsal::run_ledger::RunLedger;
use crate::dispatch::rehearsal::verda_gateway::FakeVerda;

/// The operator account the rehearsal drives the admin API with.
pub const OPERATOR: &str = "operator";
const API_KEY: &str = "rehearsal-inference-key";

/// A free loopback port (bound and released: a tiny race, fine on loopback).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.is_file())
}

/// `redis-server` with `appendfsync always`, so a kill -9 loses nothing
/// that was acknowledged (the setting docs/operators.md asks for).
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisProcess {
    fn start(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut redis = RedisProcess {
            child: None,
            port: free_port()?,
            dir,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let binary = on_path("redis-server").context(
            "redis-server is not on PATH (Debian: apt-get install redis-server); \
             use --store embedded to rehearse without Redis",
        )?;
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not start on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port and folder; the AOF is replayed.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `comfyume serve` process.
pub struct HostProcess {
    /// `host-1`, `host-2`…: the rehearsal's own name for it.
    pub name: String,
    /// Where attendees reach it.
    pub port: u16,
    child: Option<Child>,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Highest resident set size seen, in KiB.
    pub rss_max_kib: u64,
    /// Times it was killed.
    pub kills: u32,
}

impl HostProcess {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data")
            .arg(&self.data)
            .env("COMFYUME_LOG", "warn,comfyume=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process is running.
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no lease released.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// Samples the resident set size (Linux `/proc`; elsewhere nothing).
    pub fn sample_rss(&mut self) {
        let Some(child) = &self.child else { return };
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        let rss = status.ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        });
        if let Some(kib) = rss {
            self.rss_max_kib = self.rss_max_kib.max(kib);
        }
    }

    /// The log file (stderr of every run of this host).
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything a rehearsal starts.
pub struct Cluster {
    /// The hosts, in start order.
    pub hosts: Vec<HostProcess>,
    /// The Redis server, with `--store redis`.
    pub redis: Option<RedisProcess>,
    /// The fake deployments: `[0]` H200 spot, `[1]` B300 on-demand.
    pub gateways: Vec<Arc<FakeVerda>>,
    /// Every GPU run of both deployments.
    pub ledger: Arc<RunLedger>,
    /// The operator's password.
    pub operator_password: String,
    /// Plain HTTP client for the operator's calls and health checks.
    pub http: reqwest::Client,
    /// The folder everything lives in (kept with `--keep`).
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// The pools every rehearsal host runs: (name, deployment, gpu, tier,
/// price per hour in EUR, a share of the replicas).
const POOLS: [(&str, &str, &str, &str, f64); 2] = [
    ("h200-spot", "comfyume-h200-spot", "H200", "spot", 1.15),
    (
        "b300-on-demand",
        "comfyume-b300-on-demand",
        "B300",
        "on-demand",
        4.95,
    ),
];

impl Cluster {
    /// Starts Redis (if asked), the gateway and its replicas, and the hosts;
    /// returns once every host answers `/health`.
    pub async fn start(plan: &Plan) -> anyhow::Result<Cluster> {
        crate::tls::install_provider();
        let temp = tempfile::Builder::new()
            .prefix("comfyume-rehearsal-")
            .tempdir()?;
        let dir = temp.path().to_path_buf();
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let redis = if plan.redis {
            Some(RedisProcess::start(dir.join("redis"))?)
        } else {
            None
        };
        let comfy = RehearsalConfig {
            cold_start: plan.cold_start,
            step_time: plan.step_time,
            max_steps: plan.max_steps,
            ..RehearsalConfig::default()
        };
        // One ledger for both deployments: a job moved from a failing pool
        // to the other while its first run went on is a duplicate too.
        let ledger = Arc::new(RunLedger::default());
        let mut gateways = Vec::new();
        for (i, (_, deployment, ..)) in POOLS.iter().enumerate() {
            let replicas = plan.replicas[i];
            let (gateway, _) = FakeVerda::with_replicas_sharing(
                ledger.clone(),
                deployment,
                API_KEY,
                replicas,
                comfy.clone(),
            )
            .await?;
            gateways.push(gateway);
        }
        let gateway = FakeVerda::serve_all(gateways.clone()).await?;

        let operator_password = crate::auth::generate_password();
        // The CLI's default argon2 cost: logging in costs what it will cost.
        let hash = hash_password(&operator_password, &argon2::Params::default())?;
        UsersFile::update(&data, |f| f.add(OPERATOR, Role::Admin, hash))
            .context("writing the operator account")?;

        let mut hosts = Vec::new();
        for n in 1..=plan.hosts {
            let port = free_port()?;
            let config = dir.join(format!("host-{n}.toml"));
            let redis_url = redis.as_ref().map(RedisProcess::url);
            std::fs::write(
                &config,
                host_config(plan, port, &format!("http://{gateway}"), redis_url),
            )?;
            let mut host = HostProcess {
                name: format!("host-{n}"),
                port,
                child: None,
                config,
                data: data.clone(),
                log: dir.join(format!("host-{n}.log")),
                rss_max_kib: 0,
                kills: 0,
            };
            host.spawn()?;
            hosts.push(host);
        }
        let cluster = Cluster {
            hosts,
            redis,
            gateways,
            ledger,
            operator_password,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            dir,
            // --keep: the logs and data stay for reading afterwards.
            _temp: if plan.keep {
                let _ = temp.keep();
                None
            } else {
                Some(temp)
            },
        };
        for i in 0..cluster.hosts.len() {
            cluster.wait_healthy(i, Duration::from_secs(120)).await?;
        }
        Ok(cluster)
    }

    /// The host's `/health` answer (none when unreachable).
    pub async fn health(&self, host: usize) -> Option<(u16, Value)> {
        let url = format!("{}/health", self.hosts[host].url());
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        let code = response.status().as_u16();
        Some((code, response.json().await.unwrap_or(Value::Null)))
    }

    /// Waits until the host answers `/health` with 200.
    pub async fn wait_healthy(&self, host: usize, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some((200, _)) = self.health(host).await {
                return Ok(());
            }
            if started.elapsed() > limit {
                let log = std::fs::read_to_string(self.hosts[host].log()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "{} was not healthy after {limit:?}; the end of its log:\n{}",
                    self.hosts[host].name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the host that says it holds the dispatcher lease.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.hosts.len() {
            if let Some((_, health)) = self.health(i).await
                && health["leader"] == true
            {
                return Some(i);
            }
        }
        None
    }

    /// Restarts a killed host (same port, config and data).
    pub fn restart(&mut self, host: usize) -> anyhow::Result<()> {
        self.hosts[host].spawn()
    }

    /// An operator request to a live host (the first that is alive).
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let host = self
            .hosts
            .iter()
            .find(|h| h.alive())
            .unwrap_or(&self.hosts[0]);
        self.admin_on(host, method, path)
    }

    /// An operator request to one host.
    pub fn admin_on(
        &self,
        host: &HostProcess,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", host.url()))
            .basic_auth(OPERATOR, Some(&self.operator_password))
    }
}

/// The config file one host runs with: Verda pools on the fake gateway,
/// short leases so a dead host's jobs come back within the rehearsal.
fn host_config(plan: &Plan, port: u16, gateway: &str, redis_url: Option<String>) -> String {
    let queue = match redis_url {
        Some(url) => format!("store = \"redis\"\nredis_url = \"{url}\"\n"),
        None => "store = \"embedded\"\n".to_string(),
    };
    let mut pools = String::new();
    for (i, (name, deployment, gpu, tier, price)) in POOLS.iter().enumerate() {
        pools.push_str(&format!(
            "[pools.{name}]\nkind = \"verda\"\ndeployment = \"{deployment}\"\ngpu = \"{gpu}\"\n\
             tier = \"{tier}\"\ncapacity = {}\nprice_per_hour = {price}\n\n",
            plan.replicas[i]
        ));
    }
    format!(
        r#"# Written by `comfyume rehearse`.
[plugins]
scheduler = "{scheduler}"
selector = "h200-spot"

[queue]
{queue}lease_secs = {lease}
max_pending = {max_pending}
max_running = 2

[dispatch]
mode = "serverless"
callback_url = "http://127.0.0.1:{port}"

[verda]
api_key = "{API_KEY}"
base_url = "{gateway}"
poll_interval_ms = 200
queue_grace_secs = 60

[timeouts]
job_wait_secs = 120
poll_secs = 5

[frontend]
auto_install = false

[attendees]
templates_dir = "{templates}"
# The rehearsal compresses the day (--speed): a real day's per-minute
# submit rate would be reached several times sooner and refuse the scripted
# Run presses; the limit itself is tested in host/tests/attendee_api.
submits_per_minute = 6000
submit_burst = 500

{pools}"#,
        scheduler = plan.scheduler,
        lease = plan.lease_secs,
        max_pending = plan.max_pending,
        templates = plan.templates_dir.display(),
    )
}
