//! The predecessor's environment variable names.
//!
//! The Python predecessor was configured through a `.env` file; reading its
//! names lets an operator point the new host at the old file. Each name maps
//! to one key of the new configuration; `COMFYUME_*` variables win over them.
//!
//! | variable | key |
//! |---|---|
//! | `INFERENCE_MODE` (`local` / `serverless`) | `dispatch.mode` |
//! | `SERVERLESS_ACTIVE` (e.g. `h200-spot`) | `dispatch.active_pool` |
//! | `SERVERLESS_API_KEY` | `verda.api_key` |
//! | `COMFYUI_URL` | `dispatch.comfyui_url` |
//! | `COMFYUI_TIMEOUT` (seconds) | `timeouts.job_wait_secs` |
//! | `REDIS_URL`, or `REDIS_HOST` + `REDIS_PORT` + `REDIS_PASSWORD` | `queue.redis_url` |
//! | `QUEUE_MANAGER_PORT` | ignored (one host serves everything now); logged |

/// `(variable, dotted key)` for the one-to-one names.
pub const DIRECT: &[(&str, &str)] = &[
    ("INFERENCE_MODE", "dispatch.mode"),
    ("SERVERLESS_ACTIVE", "dispatch.active_pool"),
    ("SERVERLESS_API_KEY", "verda.api_key"),
    ("COMFYUI_URL", "dispatch.comfyui_url"),
    ("COMFYUI_TIMEOUT", "timeouts.job_wait_secs"),
    ("REDIS_URL", "queue.redis_url"),
];

/// The `(dotted key, raw value, variable)` triples the legacy names set.
pub fn overrides(env: &[(String, String)]) -> Vec<(String, String, String)> {
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut out: Vec<(String, String, String)> = DIRECT
        .iter()
        .filter_map(|(var, key)| {
            get(var).map(|v| {
                // The predecessor wrote modes in any case.
                let v = if *var == "INFERENCE_MODE" {
                    v.to_lowercase()
                } else {
                    v
                };
                (key.to_string(), v, var.to_string())
            })
        })
        .collect();
    if get("REDIS_URL").is_none()
        && let Some(host) = get("REDIS_HOST")
    {
        let port = get("REDIS_PORT").unwrap_or_else(|| "6379".into());
        let auth = get("REDIS_PASSWORD")
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        out.push((
            "queue.redis_url".into(),
            format!("redis://{auth}{host}:{port}"),
            "REDIS_HOST".into(),
        ));
    }
    if get("QUEUE_MANAGER_PORT").is_some() {
        tracing::info!("QUEUE_MANAGER_PORT is ignored: the queue is part of the host now");
    }
    out
}
