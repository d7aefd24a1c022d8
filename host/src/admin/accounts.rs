//! Attendee accounts over HTTP: create in bulk, reset a password, disable,
//! set caps and the priority class.
//!
//! Policy: the same users file and argon2id hashes as `comfyume user`
//! (edited under its lock, so the command line and the API never lose each
//! other's changes). Generated passwords are in the answer once and never
//! stored or logged in clear. A disabled account cannot log in (403) and
//! its queued jobs stay queued (cancel them if the seat is gone); admin
//! accounts are changed with `comfyume user` only, so the operator cannot
//! lock themselves out from the dashboard. Caps and the priority class live
//! in the job store (shared by every host on one Redis) and apply to the
//! next submit and the next dispatch decision.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admin;
use crate::auth::{Identity, Role, UsersFile, generate_password, hash_password};
use crate::front::ApiError;
use crate::queue::{Priority, UserLimits};

/// Most accounts one bulk request creates.
const MAX_BULK: u32 = 500;

fn users_error(error: crate::auth::users::UsersError) -> ApiError {
    use crate::auth::users::UsersError as E;
    match error {
        E::InvalidName(_) => ApiError::BadRequest(error.to_string()),
        E::Exists(_) => ApiError::Conflict(error.to_string()),
        E::NotFound(_) => ApiError::NotFound(error.to_string()),
        other => ApiError::Unavailable(format!("the users file: {other}")),
    }
}

/// Runs a users-file edit (file lock, argon2) off the executor.
async fn edit<T: Send + 'static>(
    admin: &Admin,
    change: impl FnOnce(&mut UsersFile) -> Result<T, crate::auth::users::UsersError> + Send + 'static,
) -> Result<T, ApiError> {
    let data_dir = admin.state.config.server.data_dir.clone();
    let result = tokio::task::spawn_blocking(move || UsersFile::update(&data_dir, change))
        .await
        .map_err(|e| ApiError::Unavailable(format!("editing the users: {e}")))?
        .map_err(users_error)?;
    // The login layer re-reads the file when it changes; forget cached
    // logins now so a reset or disable bites on the very next request.
    admin.state.auth.clear_cache();
    Ok(result)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Create {
    /// Explicit names…
    #[serde(default)]
    names: Vec<String>,
    /// …or `count` numbered ones: `prefix01`, `prefix02`, …
    count: Option<u32>,
    /// The numbered names' prefix.
    #[serde(default = "default_prefix")]
    #[schema(default = "attendee")]
    prefix: String,
    /// The accounts' role.
    #[serde(default = "default_role")]
    #[schema(value_type = super::openapi::AccountRole, default = "attendee")]
    role: Role,
}

fn default_prefix() -> String {
    "attendee".into()
}

fn default_role() -> Role {
    Role::Attendee
}

#[utoipa::path(post, path = "/admin/api/attendees", operation_id = "create_accounts", tag = "attendees",
    request_body = Create,
    responses(
        (status = 201, description = "The new accounts with their passwords (shown once) and the names skipped", body = super::openapi::CreatedAccounts),
        (status = 400, description = "A malformed body, both or neither of count and names, or an invalid name", body = super::openapi::ApiErrorBody),
        (status = 403, description = "Admin accounts are made with `comfyume user`", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/attendees {"count": 40, "prefix": "attendee"}` or
/// `{"names": ["ana", "ben"]}`: creates the accounts that do not exist yet;
/// answers each new `name` with its generated `password`, once.
pub(super) async fn create(
    State(admin): State<Arc<Admin>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: Create = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"count\": N, \"prefix\": \"attendee\"}} or {{\"names\": [..]}}: {e}"
        ))
    })?;
    if request.role == Role::Admin {
        return Err(ApiError::Forbidden(
            "admin accounts are created with `comfyume user add --role admin`".into(),
        ));
    }
    let names: Vec<String> = match (request.count, request.names.is_empty()) {
        (Some(count), true) if (1..=MAX_BULK).contains(&count) => {
            let width = count.to_string().len().max(2);
            (1..=count)
                .map(|i| format!("{}{i:0width$}", request.prefix))
                .collect()
        }
        (None, false) if request.names.len() <= MAX_BULK as usize => request.names,
        _ => {
            return Err(ApiError::BadRequest(format!(
                "give either count (1 to {MAX_BULK}) or names (at most {MAX_BULK}), not both"
            )));
        }
    };
    if let Some(bad) = names.iter().find(|n| !crate::auth::valid_user_name(n)) {
        return Err(users_error(crate::auth::users::UsersError::InvalidName(
            bad.clone(),
        )));
    }
    let params = admin.state.auth.params();
    let role = request.role;
    let (created, skipped) = edit(&admin, move |file| {
        let (mut created, mut skipped) = (Vec::new(), Vec::new());
        for name in names {
            if file.get(&name).is_some() {
                skipped.push(name);
                continue;
            }
            let password = generate_password();
            file.add(&name, role, hash_password(&password, &params)?)?;
            created.push(json!({"name": name, "password": password}));
        }
        Ok((created, skipped))
    })
    .await?;
    tracing::info!(created = created.len(), skipped = skipped.len(), %role, "operator created accounts");
    Ok((
        StatusCode::CREATED,
        Json(json!({"created": created, "skipped": skipped})),
    ))
}

#[utoipa::path(post, path = "/admin/api/attendees/{name}/password", operation_id = "reset_password", tag = "attendees",
    params(("name" = String, Path, description = "The login name")),
    responses(
        (status = 200, description = "The new password, shown once", body = super::openapi::NewPassword),
        (status = 403, description = "Admin accounts are changed with `comfyume user`", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such account", body = super::openapi::ApiErrorBody),
    )
)]
/// `POST /admin/api/attendees/{name}/password`: a new generated password,
/// answered once.
pub(super) async fn reset_password(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let params = admin.state.auth.params();
    let password = generate_password();
    let hash = hash_password(&password, &params).map_err(users_error)?;
    let who = name.clone();
    edit(&admin, move |file| {
        let user = file.get_mut(&who)?;
        if user.role == Role::Admin {
            return Ok(false);
        }
        user.hash = hash;
        Ok(true)
    })
    .await?
    .then_some(())
    .ok_or_else(admin_only_by_cli)?;
    tracing::info!(user = %name, "operator reset a password");
    Ok(Json(json!({"name": name, "password": password})))
}

fn admin_only_by_cli() -> ApiError {
    ApiError::Forbidden("admin accounts are changed with `comfyume user`".into())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Change {
    /// A disabled account cannot log in.
    disabled: Option<bool>,
    /// Most jobs waiting at once (1–1000).
    max_pending: Option<u32>,
    /// Most jobs running at once (1–1000).
    max_running: Option<u32>,
    /// The priority class.
    #[schema(value_type = Option<super::openapi::PriorityClass>)]
    priority: Option<Priority>,
}

#[utoipa::path(put, path = "/admin/api/attendees/{name}", operation_id = "change_account", tag = "attendees",
    params(("name" = String, Path, description = "The login name")),
    request_body = Change,
    responses(
        (status = 200, description = "The account as `GET /admin/api/attendees` lists it", body = super::openapi::AttendeeRow),
        (status = 400, description = "A malformed body or a cap out of range", body = super::openapi::ApiErrorBody),
        (status = 403, description = "Admin accounts are changed with `comfyume user`", body = super::openapi::ApiErrorBody),
        (status = 404, description = "No such account", body = super::openapi::ApiErrorBody),
    )
)]
/// `PUT /admin/api/attendees/{name} {"disabled", "max_pending",
/// "max_running", "priority"}` (any of them).
pub(super) async fn change(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let change: Change = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected any of disabled (bool), max_pending, max_running (1–1000), priority (instructor | high | normal | low): {e}"
        ))
    })?;
    for cap in [change.max_pending, change.max_running]
        .into_iter()
        .flatten()
    {
        if !(1..=1000).contains(&cap) {
            return Err(ApiError::BadRequest(
                "caps must be between 1 and 1000".into(),
            ));
        }
    }
    let file = admin.users().await?;
    let user = file
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no user {name:?}")))?;
    if user.role == Role::Admin {
        return Err(admin_only_by_cli());
    }
    let identity = Identity {
        name: user.name.clone(),
        role: user.role,
    };
    if let Some(disabled) = change.disabled {
        let who = name.clone();
        edit(&admin, move |file| {
            file.get_mut(&who)?.disabled = disabled;
            Ok(())
        })
        .await?;
        tracing::info!(user = %name, disabled, "operator changed an account");
    }
    if change.max_pending.is_some() || change.max_running.is_some() || change.priority.is_some() {
        let snapshot = admin.state.queue.snapshot().await?;
        let mut limits = snapshot
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| UserLimits {
                name: name.clone(),
                max_pending: u.max_pending,
                max_running: u.max_running,
                priority: u.priority,
            })
            .unwrap_or_else(|| admin.front.first_limits(&identity));
        limits.max_pending = change.max_pending.unwrap_or(limits.max_pending);
        limits.max_running = change.max_running.unwrap_or(limits.max_running);
        limits.priority = change.priority.unwrap_or(limits.priority);
        admin.state.queue.set_user(limits.clone()).await?;
        tracing::info!(user = %name, max_pending = limits.max_pending, max_running = limits.max_running, priority = limits.priority.name(), "operator changed caps");
        admin.state.dispatcher.wake();
    }
    let listed = super::attendees::list(State(admin)).await?;
    let one = listed.0["attendees"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["name"] == name.as_str()).cloned())
        .unwrap_or(Value::Null);
    Ok(Json(one))
}
