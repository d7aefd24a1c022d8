//! What the host measures as it works, for `/metrics`: how long jobs wait
//! and run, why dispatches fail, cold starts, plugin call latency, and the
//! GPU time and money spent.
//!
//! Policy: one process-wide [`Recorder`] (a `prometheus` registry), so the
//! dispatcher and the plugin registry record where things happen without
//! threading a handle through every call. Values are per host: a Prometheus
//! `sum()` over the hosts gives the workshop. Labels are workflow kinds,
//! pool names, plugin labels and fixed cause words, never an attendee or a
//! prompt, so cardinality stays what the operator configured. Gauges read
//! from the queue at scrape time live in `admin::metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    CounterVec, Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// Every family: name, help, type.
const DECLARED: &[(&str, &str, &str)] = &[
    (
        "comfyume_job_queued_seconds",
        "Time from submit to a GPU slot, by workflow kind and pool.",
        "histogram",
    ),
    (
        "comfyume_job_run_seconds",
        "Time on the GPU, by workflow kind, pool and outcome.",
        "histogram",
    ),
    (
        "comfyume_dispatch_failures_total",
        "Attempts that did not end with outputs, by pool and cause.",
        "counter",
    ),
    (
        "comfyume_cold_starts_total",
        "Jobs sent to a pool with no warm replica.",
        "counter",
    ),
    (
        "comfyume_plugin_call_seconds",
        "Plugin call latency, by plugin and slot.",
        "histogram",
    ),
    (
        "comfyume_plugin_call_failures_total",
        "Plugin calls that failed (the default decided), by plugin, slot and cause.",
        "counter",
    ),
    (
        "comfyume_pool_gpu_seconds_total",
        "GPU-seconds of jobs this host ran, by pool.",
        "counter",
    ),
    (
        "comfyume_pool_cost_total",
        "GPU-seconds × the pool's price, of jobs this host ran, by pool.",
        "counter",
    ),
];

fn help(name: &str) -> &'static str {
    DECLARED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, help, _)| help)
}

/// The host's measurements.
pub struct Recorder {
    registry: Registry,
    queued: HistogramVec,
    run: HistogramVec,
    dispatch_failures: IntCounterVec,
    cold_starts: IntCounterVec,
    plugin_calls: HistogramVec,
    plugin_failures: IntCounterVec,
    gpu_seconds: CounterVec,
    cost: CounterVec,
}

/// Seconds, from a fast image (a few seconds) to a long video (an hour).
const JOB_BUCKETS: &[f64] = &[
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0,
];

/// Seconds, for plugin calls (deadline 250 ms by default).
const CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"))
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"))
}

fn float_counter(name: &str, help: &str, labels: &[&str]) -> CounterVec {
    CounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"))
}

impl Recorder {
    fn new() -> Recorder {
        let recorder = Recorder {
            registry: Registry::new(),
            queued: histogram(
                "comfyume_job_queued_seconds",
                help("comfyume_job_queued_seconds"),
                JOB_BUCKETS,
                &["kind", "pool"],
            ),
            run: histogram(
                "comfyume_job_run_seconds",
                help("comfyume_job_run_seconds"),
                JOB_BUCKETS,
                &["kind", "pool", "outcome"],
            ),
            dispatch_failures: counter(
                "comfyume_dispatch_failures_total",
                help("comfyume_dispatch_failures_total"),
                &["pool", "cause"],
            ),
            cold_starts: counter(
                "comfyume_cold_starts_total",
                help("comfyume_cold_starts_total"),
                &["pool"],
            ),
            plugin_calls: histogram(
                "comfyume_plugin_call_seconds",
                help("comfyume_plugin_call_seconds"),
                CALL_BUCKETS,
                &["plugin", "slot"],
            ),
            plugin_failures: counter(
                "comfyume_plugin_call_failures_total",
                help("comfyume_plugin_call_failures_total"),
                &["plugin", "slot", "cause"],
            ),
            gpu_seconds: float_counter(
                "comfyume_pool_gpu_seconds_total",
                help("comfyume_pool_gpu_seconds_total"),
                &["pool"],
            ),
            cost: float_counter(
                "comfyume_pool_cost_total",
                help("comfyume_pool_cost_total"),
                &["pool"],
            ),
        };
        for metric in [
            Box::new(recorder.queued.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(recorder.run.clone()),
            Box::new(recorder.dispatch_failures.clone()),
            Box::new(recorder.cold_starts.clone()),
            Box::new(recorder.plugin_calls.clone()),
            Box::new(recorder.plugin_failures.clone()),
            Box::new(recorder.gpu_seconds.clone()),
            Box::new(recorder.cost.clone()),
        ] {
            // Names are fixed above and unique: registering cannot fail.
            let _ = recorder.registry.register(metric);
        }
        recorder
    }

    /// A job got a GPU slot after waiting `waited`.
    pub fn job_started(&self, kind: &str, pool: &str, waited: Duration, cold: bool) {
        self.queued
            .with_label_values(&[kind, pool])
            .observe(waited.as_secs_f64());
        if cold {
            self.cold_starts.with_label_values(&[pool]).inc();
        }
    }

    /// A job's attempt ended: `outcome` is `succeeded`, `failed`,
    /// `cancelled` or `requeued`; `cause` says why it did not succeed.
    pub fn job_ended(
        &self,
        kind: &str,
        pool: &str,
        outcome: &str,
        cause: Option<&str>,
        gpu_seconds: f64,
        price_per_hour: f64,
    ) {
        self.run
            .with_label_values(&[kind, pool, outcome])
            .observe(gpu_seconds);
        if let Some(cause) = cause {
            self.dispatch_failures
                .with_label_values(&[pool, cause])
                .inc();
        }
        if gpu_seconds.is_finite() && gpu_seconds > 0.0 {
            self.gpu_seconds
                .with_label_values(&[pool])
                .inc_by(gpu_seconds);
            self.cost
                .with_label_values(&[pool])
                .inc_by(gpu_seconds * price_per_hour.max(0.0) / 3600.0);
        }
    }

    /// A plugin call took `took`; `failure` is the error's cause, if any.
    pub fn plugin_call(&self, plugin: &str, slot: &str, took: Duration, failure: Option<&str>) {
        self.plugin_calls
            .with_label_values(&[plugin, slot])
            .observe(took.as_secs_f64());
        if let Some(cause) = failure {
            self.plugin_failures
                .with_label_values(&[plugin, slot, cause])
                .inc();
        }
    }

    /// Everything recorded, in Prometheus' text format. A family with no
    /// sample yet (no cold start so far, say) is still declared, so
    /// dashboards and alerts find every name from the first scrape.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(%error, "cannot encode the recorded metrics");
        }
        let mut text = String::from_utf8(out).unwrap_or_default();
        for (name, help, kind) in DECLARED {
            if !families.iter().any(|f| f.name() == *name) {
                text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            }
        }
        text
    }
}

/// The process-wide recorder.
pub fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(Recorder::new)
}
