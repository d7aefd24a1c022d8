//! Environment variables as figment providers, one per variable.
//!
//! One provider per variable (rather than figment's `Env`) so that a bad
//! value's error names the exact variable it came from, and so tests can pass
//! an environment without touching the process's.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// One variable setting one dotted key.
pub(super) struct EnvVar {
    /// The variable's name, shown in errors.
    pub var: String,
    /// The dotted config key, e.g. `plugins.deadline_ms`.
    pub key: String,
    /// The raw value.
    pub raw: String,
    /// Keep the value a string (URLs, keys, names) instead of parsing it.
    pub string: bool,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.var))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let value = if self.string {
            Value::from(self.raw.clone())
        } else {
            self.raw.parse().unwrap_or_else(|e| match e {})
        };
        let nested = figment::util::nest(&self.key, value);
        let dict = nested.into_dict().unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// `COMFYUME_PLUGINS__DEADLINE_MS=500` → `plugins.deadline_ms`.
pub(super) fn prefixed(env: &[(String, String)]) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = env
        .iter()
        .filter_map(|(var, raw)| {
            let rest = var.strip_prefix("COMFYUME_")?;
            if !rest.contains("__") {
                return None; // e.g. COMFYUME_LOG: not a config key
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            // Free-text keys stay strings even when they look like numbers.
            // (`1.60` must stay the version "1.60", not the number 1.6.)
            let string = key.ends_with("api_key")
                || key.ends_with("_url")
                || key.ends_with("password")
                || key.ends_with("version")
                || key.ends_with("sha256");
            Some(EnvVar {
                var: var.clone(),
                key,
                raw: raw.clone(),
                string,
            })
        })
        .collect();
    vars.sort_by(|a, b| a.var.cmp(&b.var));
    vars
}
