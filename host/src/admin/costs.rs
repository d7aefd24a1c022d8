//! What the workshop has cost so far, and the budget cap.
//!
//! Policy:
//! - Cost is GPU-seconds × the pool's configured `price_per_hour` / 3600,
//!   counted when a job finishes (the store records the GPU-seconds the
//!   backend billed); a running job counts once it ends. A job whose pool is
//!   no longer configured is counted in GPU-seconds and listed as unpriced.
//! - The sums are read from the job store, not kept in memory, so every host
//!   on one Redis agrees and a restart loses nothing. Jobs removed by the
//!   retention trim (`queue.retention_hours`) drop out of the sums.
//! - With a budget set (`PUT /admin/api/settings {"budget": amount}`; zero
//!   or less removes it), [`budget_loop`] checks the total every few seconds
//!   and holds dispatch once it is reached: queued jobs stay queued, running
//!   ones finish, the operator sees why in `/admin/api/costs`, the
//!   dashboard, `/metrics` and the log. Raising the budget releases it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Value, json};

use super::Admin;
use crate::front::ApiError;
use crate::queue::{Job, Page};

/// How often the budget is checked.
const BUDGET_CHECK: Duration = Duration::from_secs(5);

/// Jobs, GPU-seconds and cost of one attendee, one pool or the whole day.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Finished jobs that used a GPU.
    pub jobs: u64,
    /// GPU-seconds billed.
    pub gpu_seconds: f64,
    /// GPU-seconds × price.
    pub cost: f64,
}

impl Usage {
    fn add(&mut self, gpu_seconds: f64, cost: f64) {
        self.jobs += 1;
        self.gpu_seconds += gpu_seconds;
        self.cost += cost;
    }
}

/// The day's costs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    /// Everything.
    pub total: Usage,
    /// By pool name.
    pub pools: BTreeMap<String, Usage>,
    /// By attendee.
    pub users: BTreeMap<String, Usage>,
    /// Pools jobs ran on that have no configured price any more.
    pub unpriced_pools: Vec<String>,
}

/// Every job of `user`, all pages.
pub(super) async fn every_job_of(admin: &Admin, user: &str) -> Result<Vec<Job>, ApiError> {
    const PAGE: usize = 500;
    let mut all = Vec::new();
    loop {
        let page = admin
            .state
            .queue
            .list_user(
                user,
                Page {
                    offset: all.len(),
                    limit: PAGE,
                },
            )
            .await?;
        let last = page.len() < PAGE;
        all.extend(page);
        if last {
            return Ok(all);
        }
    }
}

/// Sums the costs from the store.
pub async fn compute(admin: &Admin) -> Result<Costs, ApiError> {
    let users = admin.users().await?;
    let prices: BTreeMap<&str, f64> = admin
        .state
        .config
        .pools
        .iter()
        .map(|(name, pool)| (name.as_str(), pool.price_per_hour))
        .collect();
    let mut costs = Costs::default();
    for user in &users.users {
        for job in every_job_of(admin, &user.name).await? {
            if !(job.state.is_terminal() && job.gpu_seconds.is_finite() && job.gpu_seconds > 0.0) {
                continue;
            }
            let pool = job.backend.as_ref().map_or("unknown", |b| b.pool.as_str());
            let cost = match prices.get(pool) {
                Some(price) => job.gpu_seconds * price / 3600.0,
                None => {
                    if !costs.unpriced_pools.iter().any(|p| p == pool) {
                        costs.unpriced_pools.push(pool.to_string());
                    }
                    0.0
                }
            };
            costs.total.add(job.gpu_seconds, cost);
            costs
                .pools
                .entry(pool.to_string())
                .or_default()
                .add(job.gpu_seconds, cost);
            costs
                .users
                .entry(job.user.clone())
                .or_default()
                .add(job.gpu_seconds, cost);
        }
    }
    Ok(costs)
}

/// The budget's state as the operator sees it.
fn budget_view(admin: &Admin, spent: f64) -> Value {
    let limit = admin.settings.get().budget;
    json!({
        "limit": limit,
        "spent": spent,
        "reached": limit.is_some_and(|l| spent >= l),
        "dispatch_held": admin.state.dispatcher.held(),
    })
}

#[utoipa::path(get, path = "/admin/api/costs", operation_id = "costs", tag = "costs",
    responses((status = 200, description = "The day's cost by pool and attendee, and the budget", body = super::openapi::CostsView))
)]
/// `GET /admin/api/costs`.
pub(super) async fn render(State(admin): State<Arc<Admin>>) -> Result<Json<Value>, ApiError> {
    let costs = compute(&admin).await?;
    let pools: Vec<Value> = costs
        .pools
        .iter()
        .map(|(name, usage)| json!({"pool": name, "jobs": usage.jobs, "gpu_seconds": usage.gpu_seconds, "cost": usage.cost}))
        .collect();
    let users: Vec<Value> = costs
        .users
        .iter()
        .map(|(name, usage)| json!({"user": name, "jobs": usage.jobs, "gpu_seconds": usage.gpu_seconds, "cost": usage.cost}))
        .collect();
    Ok(Json(json!({
        "total": costs.total,
        "pools": pools,
        "users": users,
        "unpriced_pools": costs.unpriced_pools,
        "budget": budget_view(&admin, costs.total.cost),
    })))
}

/// Holds or releases dispatch by the budget, now. Returns the total cost.
pub(super) async fn enforce(admin: &Admin) -> Result<f64, ApiError> {
    let limit = admin.settings.get().budget;
    let spent = compute(admin).await?.total.cost;
    let hold = limit
        .filter(|l| spent >= *l)
        .map(|l| format!("the budget of {l:.2} is spent ({spent:.2}): dispatch is held until the operator raises or removes it"));
    if admin.state.dispatcher.set_hold(hold.clone()) {
        match hold {
            Some(reason) => tracing::warn!(spent, ?limit, %reason, "budget reached: dispatch held"),
            None => tracing::info!(spent, ?limit, "budget not reached: dispatch released"),
        }
    }
    Ok(spent)
}

/// Checks the budget every [`BUDGET_CHECK`] for as long as the host runs.
pub async fn budget_loop(admin: Arc<Admin>) {
    let mut tick = tokio::time::interval(BUDGET_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if admin.settings.get().budget.is_none() && admin.state.dispatcher.held().is_none() {
            continue;
        }
        if let Err(error) = enforce(&admin).await {
            tracing::warn!(%error, "cannot check the budget");
        }
    }
}
