//! Verda's management API: a container deployment's replica counts (for
//! pre-warming) and its request TTL.
//!
//! Policy: OAuth 2.0 client credentials (`POST {base}/oauth2/token`), the
//! token reused until a minute before it expires and fetched again once on
//! a 401. Scaling is read (`GET /container-deployments/{name}/scaling`),
//! changed in `min_replica_count` and `max_replica_count` only, and written
//! back whole (`PATCH`), so the deployment's other scaling settings stay
//! what its owner set. The request TTL (`queue_message_ttl_seconds`) is
//! read at start, to check it covers a job.
//! Every call has the `timeouts.poll_secs` limit; an error names the step
//! and Verda's status, never the secret.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::Secret;

/// Why a scaling call failed.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// The credentials were refused or the token endpoint failed.
    #[error("Verda refused the management credentials: {0}")]
    Auth(String),
    /// The management API answered an error or could not be reached.
    #[error("Verda's management API: {0}")]
    Api(String),
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
    #[serde(default = "an_hour")]
    expires_in: u64,
}

fn an_hour() -> u64 {
    3600
}

/// A client of one account's management API.
pub struct VerdaScaling {
    base: String,
    client_id: String,
    client_secret: Secret,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl VerdaScaling {
    /// The client for the configured account, if `verda.client_id` and
    /// `verda.client_secret` are set.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<VerdaScaling>> {
        let verda = &config.verda;
        let (Some(id), Some(secret)) = (&verda.client_id, &verda.client_secret) else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(config.timeouts.poll_secs.max(1));
        VerdaScaling::new(&verda.management_url, id, secret.clone(), timeout).map(Some)
    }

    /// `base`: `https://api.verda.com/v1` (a fake in tests).
    pub fn new(
        base: &str,
        client_id: &str,
        client_secret: Secret,
        timeout: Duration,
    ) -> anyhow::Result<VerdaScaling> {
        Ok(VerdaScaling {
            base: base.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret,
            http: {
                crate::tls::install_provider();
                reqwest::Client::builder().timeout(timeout).build()?
            },
            token: Mutex::new(None),
        })
    }

    async fn token(&self, fresh: bool) -> Result<String, ScalingError> {
        let mut token = self.token.lock().await;
        if !fresh
            && let Some((value, until)) = token.as_ref()
            && Instant::now() < *until
        {
            return Ok(value.clone());
        }
        let answer = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .json(&json!({
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret.expose(),
            }))
            .send()
            .await
            .map_err(|e| ScalingError::Auth(format!("token request: {e}")))?;
        if !answer.status().is_success() {
            return Err(ScalingError::Auth(format!(
                "token endpoint answered {}",
                answer.status()
            )));
        }
        let got: Token = answer
            .json()
            .await
            .map_err(|e| ScalingError::Auth(format!("token answer: {e}")))?;
        let until = Instant::now() + Duration::from_secs(got.expires_in.saturating_sub(60));
        *token = Some((got.access_token.clone(), until));
        Ok(got.access_token)
    }

    /// One authorised call; a 401 fetches a new token and tries once more.
    /// Any other error status is an error naming the call.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ScalingError> {
        let (status, value) = self.request(method.clone(), path, body).await?;
        if !status.is_success() {
            let text: String = value.to_string().chars().take(200).collect();
            return Err(ScalingError::Api(format!(
                "{method} {path} answered {status}: {text}"
            )));
        }
        Ok(value)
    }

    /// One authorised call, answering any status with its JSON body (or
    /// the body's text as a JSON string); a 401 fetches a new token and
    /// tries once more. Used by `verda apply`, which must tell a 404 apart.
    pub(crate) async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value), ScalingError> {
        for fresh in [false, true] {
            let token = self.token(fresh).await?;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = request
                .send()
                .await
                .map_err(|e| ScalingError::Api(format!("{method} {path}: {e}")))?;
            let status = answer.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !fresh {
                continue;
            }
            let text = answer.text().await.unwrap_or_default();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Ok((status, value));
        }
        Err(ScalingError::Auth("a fresh token was refused too".into()))
    }

    /// The deployment's request TTL (`queue_message_ttl_seconds`).
    pub async fn request_ttl(&self, deployment: &str) -> Result<Duration, ScalingError> {
        let path = format!("/container-deployments/{deployment}/scaling");
        let scaling = self.call(reqwest::Method::GET, &path, None).await?;
        scaling["queue_message_ttl_seconds"]
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| ScalingError::Api(format!("{path} has no queue_message_ttl_seconds")))
    }

    /// Sets the deployment's minimum replicas (and its maximum, to at least
    /// that, or to `max` when given); returns the previous minimum and
    /// maximum, so a release can put both back.
    pub async fn set_replicas(
        &self,
        deployment: &str,
        min: u32,
        max: Option<u32>,
    ) -> Result<Replicas, ScalingError> {
        let path = format!("/container-deployments/{deployment}/scaling");
        let mut scaling = self.call(reqwest::Method::GET, &path, None).await?;
        let read = |key: &str| {
            scaling[key]
                .as_u64()
                .map(|n| n as u32)
                .ok_or_else(|| ScalingError::Api(format!("{path} has no {key}")))
        };
        let previous = Replicas {
            min: read("min_replica_count")?,
            max: read("max_replica_count")?,
        };
        scaling["min_replica_count"] = json!(min);
        scaling["max_replica_count"] = json!(max.unwrap_or(previous.max).max(min));
        self.call(reqwest::Method::PATCH, &path, Some(&scaling))
            .await?;
        Ok(previous)
    }
}

/// A deployment's replica bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// `min_replica_count`.
    pub min: u32,
    /// `max_replica_count`.
    pub max: u32,
}
