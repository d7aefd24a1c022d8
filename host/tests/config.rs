//! Configuration layering: defaults < TOML file < legacy names < COMFYUME_*
//! variables, and one clear line for a bad value.

use std::io::Write as _;

use comfyume::config::{Config, InferenceMode, QueueStore};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn defaults_need_no_file_and_no_environment() {
    let config = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8188");
    assert_eq!(config.server.data_dir.to_str(), Some("./data"));
    assert_eq!(config.queue.store, QueueStore::Embedded);
    assert_eq!(config.plugins.scheduler, "fair-share");
    assert_eq!(config.timeouts.job_wait_secs, 600);
}

#[test]
fn file_then_legacy_then_prefixed_environment() {
    let file = toml(
        "[plugins]\nscheduler = \"priority\"\ndeadline_ms = 400\n\n[timeouts]\njob_wait_secs = 900\n",
    );
    let config = Config::load_from(Some(file.path()), env(&[])).unwrap();
    assert_eq!(config.plugins.scheduler, "priority");
    assert_eq!(config.plugins.deadline_ms, 400);
    assert_eq!(config.timeouts.job_wait_secs, 900);

    // The predecessor's names override the file...
    let config = Config::load_from(
        Some(file.path()),
        env(&[
            ("INFERENCE_MODE", "SERVERLESS"),
            ("SERVERLESS_ACTIVE", "h200-spot"),
            ("SERVERLESS_API_KEY", "12345"),
            ("COMFYUI_TIMEOUT", "1200"),
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", "6390"),
            ("REDIS_PASSWORD", "pw"),
        ]),
    )
    .unwrap();
    assert_eq!(config.dispatch.mode, InferenceMode::Serverless);
    assert_eq!(config.dispatch.active_pool.as_deref(), Some("h200-spot"));
    assert_eq!(
        config.verda.api_key.as_ref().map(|k| k.expose()),
        Some("12345")
    );
    assert_eq!(
        format!("{:?}", config.verda.api_key),
        "Some(***)",
        "secrets never print"
    );
    assert_eq!(config.timeouts.job_wait_secs, 1200);
    assert_eq!(
        config.queue.redis_url.as_deref(),
        Some("redis://:pw@127.0.0.1:6390")
    );

    // ...and COMFYUME_* overrides both.
    let config = Config::load_from(
        Some(file.path()),
        env(&[
            ("COMFYUI_TIMEOUT", "1200"),
            ("COMFYUME_TIMEOUTS__JOB_WAIT_SECS", "1500"),
            ("COMFYUME_PLUGINS__SCHEDULER", "round-robin"),
            ("COMFYUME_LOG", "debug"),
        ]),
    )
    .unwrap();
    assert_eq!(config.timeouts.job_wait_secs, 1500);
    assert_eq!(config.plugins.scheduler, "round-robin");
}

#[test]
fn a_bad_value_is_one_line_naming_the_key_and_its_source() {
    let error = Config::load_from(None, env(&[("COMFYUME_PLUGINS__DEADLINE_MS", "soon")]))
        .unwrap_err()
        .to_string();
    assert!(!error.contains('\n'), "{error}");
    assert!(
        error.starts_with("config error: plugins.deadline_ms: "),
        "{error}"
    );
    assert!(error.contains("COMFYUME_PLUGINS__DEADLINE_MS"), "{error}");

    let file = toml("[server]\nlisten = \"not an address\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("config error: server.listen: "),
        "{error}"
    );
    assert!(error.contains(file.path().to_str().unwrap()), "{error}");

    let file = toml("[plugins]\nschedular = \"fifo\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("schedular"),
        "a typo is an error, not a silent default: {error}"
    );

    let error = Config::load_from(None, env(&[("INFERENCE_MODE", "cloud")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("config error: dispatch.mode: "),
        "{error}"
    );
    assert!(error.contains("INFERENCE_MODE"), "{error}");

    let error = Config::load_from(None, env(&[("COMFYUME_QUEUE__STORE", "redis")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "config error: queue.redis_url: is required when queue.store = \"redis\""
    );

    // No patience with a gateway blip would pay twice for running jobs.
    let file = toml("[verda]\noutage_patience_secs = 0\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("config error: verda.outage_patience_secs: must be at least one poll"),
        "{error}"
    );

    let error = Config::load_from(Some(std::path::Path::new("/nonexistent.toml")), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--config") && error.contains("does not exist"),
        "{error}"
    );
}

#[test]
fn the_documented_config_file_is_valid_and_says_the_defaults() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/comfyume.toml");
    let documented = Config::load_from(Some(&file), env(&[])).unwrap();
    let defaults = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(
        serde_json::to_value(&documented).unwrap(),
        serde_json::to_value(&defaults).unwrap(),
        "config/comfyume.toml must document the built-in defaults"
    );
}

#[test]
fn pools_replace_the_rehearsal_default_and_are_checked() {
    let defaults = Config::load_from(None, env(&[])).unwrap();
    let pools = defaults.effective_pools();
    assert_eq!(pools.keys().collect::<Vec<_>>(), ["rehearsal"]);

    let legacy = Config::load_from(None, env(&[("COMFYUI_URL", "http://127.0.0.1:8189")])).unwrap();
    let pools = legacy.effective_pools();
    assert_eq!(pools["local"].url.as_deref(), Some("http://127.0.0.1:8189"));

    let file = toml(
        "[pools.h200-spot]\nkind = \"comfyui\"\nurl = \"http://127.0.0.1:9000\"\ngpu = \"H200\"\ntier = \"spot\"\ncapacity = 4\n",
    );
    let config = Config::load_from(Some(file.path()), env(&[])).unwrap();
    assert_eq!(
        config.effective_pools().keys().collect::<Vec<_>>(),
        ["h200-spot"],
        "configured pools replace the default"
    );

    let file = toml("[pools.b300]\nkind = \"verda\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("config error: pools.b300.deployment: a verda pool needs"),
        "{error}"
    );
    // Verda's rule: an RFC-1123 label, at most 63 characters.
    let too_long = "a".repeat(64);
    for name in [
        "Comfy-H200",
        "comfy_h200",
        "-h200",
        "h200-",
        "h2 00",
        too_long.as_str(),
    ] {
        let file = toml(&format!(
            "[pools.b300]\nkind = \"verda\"\ndeployment = \"{name}\"\napi_key = \"k\"\n"
        ));
        let error = Config::load_from(Some(file.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("config error: pools.b300.deployment: "),
            "{name}: {error}"
        );
    }
    let longest = "a".repeat(63);
    let file = toml(&format!(
        "[pools.b300]\nkind = \"verda\"\ndeployment = \"{longest}\"\napi_key = \"k\"\n"
    ));
    Config::load_from(Some(file.path()), env(&[])).expect("63 characters are allowed");
    let file = toml("[pools.b300]\nkind = \"verda\"\ndeployment = \"b300\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("config error: pools.b300.api_key: a verda pool needs an inference key"),
        "{error}"
    );
    let file = toml("[pools.x]\nkind = \"comfyui\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("config error: pools.x.url: "), "{error}");
    let file = toml("[pools.x]\nkind = \"rehearsal\"\ntier = \"cheap\"\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("config error: pools.x.tier: "), "{error}");
}

#[test]
fn per_plugin_limits_by_name_over_slot_over_default() {
    use comfyume::plugins::api::PluginKind;
    let file = toml(
        "[plugins]\ndeadline_ms = 300\n\n\
         [plugins.limits.scheduler]\ndeadline_ms = 1000\n\n\
         [plugins.limits.python-fair-share]\nmemory_mib = 256\n",
    );
    let config = Config::load_from(Some(file.path()), env(&[])).unwrap();
    let table = config.plugins.limits_table();
    let python = table.for_plugin("python-fair-share", PluginKind::Scheduler);
    assert_eq!((python.deadline_ms, python.memory_mib), (1000, 256));
    let rust = table.for_plugin("fair-share", PluginKind::Scheduler);
    assert_eq!((rust.deadline_ms, rust.memory_mib), (1000, 64));
    let validator = table.for_plugin("flux2-klein", PluginKind::Validator);
    assert_eq!((validator.deadline_ms, validator.memory_mib), (300, 64));
    let widest = table.widest();
    assert_eq!((widest.deadline_ms, widest.memory_mib), (1000, 256));

    let file = toml("[plugins.limits.js-priority]\nmemory_mib = 100000\n");
    let error = Config::load_from(Some(file.path()), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("plugins.limits.js-priority.memory_mib"),
        "{error}"
    );
}
