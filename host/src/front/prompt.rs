//! `POST /api/prompt`: an attendee presses Run.
//!
//! Policy, in order; the first refusal answers, in ComfyUI's exact 400 shape
//! (`{"error": {type, message, details, extra_info}, "node_errors": {…}}`)
//! so the editor shows the dialog and outlines the nodes:
//! 1. The attendee is within their submit rate (`too_many_requests`, 429
//!    with `Retry-After`; [`super::fair`]), checked before the body is read.
//! 2. The body is at most `queue.max_payload_bytes` (`prompt_too_large`,
//!    413, refused on its declared length before it is read), JSON with a
//!    `prompt` object (`invalid_prompt`, `no_prompt`) within the node,
//!    input and link budget (`prompt_too_large`, 413; [`super::budget`]);
//!    a client-supplied `prompt_id` is a canonical lowercase UUID
//!    (`invalid_prompt_id`).
//! 3. Every node has a `class_type` the GPU side knows (`missing_node_type`,
//!    from the node catalogue), and at least one is an output
//!    (`prompt_no_outputs`).
//! 4. Every loader (`LoadImage`…) names a file the attendee owns (their
//!    uploads; their own outputs for `[output]`/`[temp]`) or one the
//!    workshop ships (listed in the GPU's node catalogue): anything else
//!    could read another attendee's file on the shared GPU, and is refused
//!    as ComfyUI refuses a missing file (`value_not_in_list` on the node
//!    and input), never forwarded.
//! 5. The validator plugins accept it (`prompt_outputs_failed_validation`
//!    with their problems per node), checking at most
//!    `attendees.max_concurrent_checks` of one attendee's prompts at once
//!    (`too_many_requests`, 429). A validator that cannot decide is a 503:
//!    the prompt is not queued unchecked.
//! 6. It is written durably to the queue (caps → 413/429 with the reason),
//!    the dispatcher is woken, and the answer is
//!    `{"prompt_id", "number", "node_errors": {}}`.
//!
//! `front: true` (queue at the front) is ignored: attendees do not jump the
//! queue; the instructor's lane is a role, not a flag.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tracing::Instrument as _;

use super::body::{BodyError, read_capped};
use super::budget::dependent_outputs;
use super::fair::retry_secs;
use super::{ApiError, Front};
use crate::auth::Identity;
use crate::front::Caller;
use crate::plugins::Validation;
use crate::plugins::api::{Problem, ProblemType};
use crate::plugins::graph::graph_from_prompt;
use crate::queue::{Cost, NewJob, StoreError, is_prompt_id};

/// The prompt routes.
pub fn router() -> Router<Arc<Front>> {
    Router::new().route("/prompt", get(queue_info).post(submit))
}

/// A refusal in ComfyUI's `/prompt` shape.
struct PromptError {
    status: StatusCode,
    body: Value,
    /// Seconds for `Retry-After` (429).
    retry_after: Option<u64>,
}

impl PromptError {
    fn new(kind: &str, message: impl Into<String>, details: impl Into<String>) -> Self {
        Self::with_info(kind, message, details, json!({}))
    }

    fn with_info(
        kind: &str,
        message: impl Into<String>,
        details: impl Into<String>,
        extra_info: Value,
    ) -> Self {
        PromptError {
            status: StatusCode::BAD_REQUEST,
            body: json!({
                "error": {"type": kind, "message": message.into(), "details": details.into(), "extra_info": extra_info},
                "node_errors": {},
            }),
            retry_after: None,
        }
    }

    /// The same refusal with another status.
    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A 429: come back in `secs`.
    fn busy(message: String, details: &str, secs: u64) -> Self {
        let mut refusal = PromptError::new("too_many_requests", message, details)
            .status(StatusCode::TOO_MANY_REQUESTS);
        refusal.retry_after = Some(secs);
        refusal
    }
}

impl IntoResponse for PromptError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<ApiError> for PromptError {
    fn from(error: ApiError) -> Self {
        let status = error.status();
        let kind = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "prompt_too_large",
            StatusCode::TOO_MANY_REQUESTS => "too_many_jobs",
            StatusCode::SERVICE_UNAVAILABLE => "queue_unavailable",
            _ => "invalid_prompt",
        };
        let message = error.to_string();
        let mut refusal = PromptError::new(kind, message.clone(), message);
        refusal.status = status;
        refusal
    }
}

/// `GET /api/prompt`: how many of the caller's jobs are not finished.
async fn queue_info(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
) -> Result<Json<Value>, ApiError> {
    let remaining = super::jobs::remaining(&front, &user.name).await?;
    Ok(Json(json!({"exec_info": {"queue_remaining": remaining}})))
}

async fn submit(
    Caller(user): Caller,
    State(front): State<Arc<Front>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("submit", user = %user.name, prompt_id = tracing::field::Empty);
    match accept(&front, &user, &headers, body).instrument(span).await {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn accept(
    front: &Front,
    user: &Identity,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, PromptError> {
    if !front.session.accepting() {
        let mut refusal = PromptError::new(
            "workshop_not_accepting",
            "The workshop is not taking new jobs right now (the operator paused it). Your queued jobs are kept; try again when it reopens.",
            format!("session: {:?}", front.session.get()).to_lowercase(),
        );
        refusal.status = StatusCode::CONFLICT;
        return Err(refusal);
    }
    if let Err(wait) = front.fair.submit(&user.name, std::time::Instant::now()) {
        let secs = retry_secs(wait);
        tracing::info!(
            retry_after = secs,
            "submit refused: over the attendee's rate"
        );
        return Err(PromptError::busy(
            format!("You are submitting faster than this workshop allows; try again in {secs} s."),
            "attendees.submits_per_minute",
            secs,
        ));
    }
    let body = read_capped(headers, body, front.max_prompt_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { max } => PromptError::new(
                "prompt_too_large",
                format!(
                    "The workflow is too large: at most {} KiB are accepted.",
                    max / 1024
                ),
                e.to_string(),
            )
            .status(StatusCode::PAYLOAD_TOO_LARGE),
            BodyError::Broken(_) => {
                PromptError::new("invalid_prompt", "Invalid prompt", e.to_string())
            }
        })?;
    let request: Value = serde_json::from_slice(&body).map_err(|e| {
        PromptError::new(
            "invalid_prompt",
            "Invalid prompt: the body is not JSON",
            e.to_string(),
        )
    })?;
    let Some(request) = request.as_object() else {
        return Err(PromptError::new(
            "invalid_prompt",
            "Invalid prompt",
            "the body must be a JSON object",
        ));
    };
    let Some(prompt) = request.get("prompt") else {
        return Err(PromptError::new(
            "no_prompt",
            "No prompt provided",
            "No prompt provided",
        ));
    };
    let Some(nodes) = prompt.as_object() else {
        return Err(PromptError::new(
            "invalid_prompt",
            "Invalid prompt",
            "\"prompt\" must be an object of node id → node",
        ));
    };
    front.budget().check(nodes).map_err(|e| {
        PromptError::new(
            "prompt_too_large",
            format!("The workflow is too large: {e}."),
            e.to_string(),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    })?;
    let prompt_id = match request.get("prompt_id") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) if is_prompt_id(id) => id.clone(),
        Some(_) => {
            return Err(PromptError::new(
                "invalid_prompt_id",
                "prompt_id must be a valid UUID",
                "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
            ));
        }
    };
    tracing::Span::current().record("prompt_id", prompt_id.as_str());
    check_nodes(front, prompt)?;
    check_inputs(front, user, prompt).await?;
    let graph = graph_from_prompt(prompt).map_err(|e| {
        PromptError::new(
            "invalid_prompt",
            format!("Invalid prompt: {e}"),
            e.to_string(),
        )
    })?;
    let Some(slot) = front.fair.check_slot(&user.name) else {
        tracing::info!("submit refused: the attendee's validator slots are busy");
        return Err(PromptError::busy(
            "Your other workflows are still being checked; try again in a second.".into(),
            "attendees.max_concurrent_checks",
            1,
        ));
    };
    let plugins = front.plugins.clone();
    let validation = tokio::task::spawn_blocking(move || {
        // Held until the check ends, even if the client hung up meanwhile.
        let _slot = slot;
        plugins.validate(&graph)
    })
    .await
    .map_err(|e| unavailable(format!("the workflow check stopped: {e}")))?;
    let (workflow_kind, cost) = match validation {
        Validation::Accepted {
            workflow_kind,
            cost,
            by,
        } => {
            tracing::debug!(?workflow_kind, validator = %by, "prompt accepted");
            (
                workflow_kind,
                Cost {
                    frames: cost.frames,
                    width: cost.width,
                    height: cost.height,
                    steps: cost.steps,
                    gpu_seconds: cost.gpu_seconds,
                },
            )
        }
        Validation::Rejected { problems, by } => {
            tracing::info!(validator = %by, problems = problems.len(), "prompt rejected");
            return Err(rejected(front, prompt, &problems));
        }
        Validation::Refused { reason } => return Err(unavailable(reason)),
    };
    let client_id = request
        .get("client_id")
        .and_then(Value::as_str)
        .filter(|id| id.len() <= 128)
        .map(str::to_owned);
    let mut extra_data = match request.get("extra_data") {
        Some(Value::Object(extra)) => extra.clone(),
        _ => Map::new(),
    };
    if let Some(id) = &client_id {
        extra_data.insert("client_id".into(), Value::from(id.clone()));
    }
    extra_data.insert("create_time".into(), Value::from(now_ms()));
    let payload = serde_json::to_vec(&json!({"prompt": prompt, "extra_data": extra_data}))
        .map_err(|e| PromptError::new("invalid_prompt", "Invalid prompt", e.to_string()))?;
    let new = NewJob {
        user: user.name.clone(),
        prompt_id: prompt_id.clone(),
        client_id,
        // The class the operator gave this attendee, else their role's.
        priority: match front.queue.user_limits(&user.name).await {
            Ok(Some(limits)) => limits.priority,
            _ => front.first_limits(user).priority,
        },
        workflow_kind,
        cost,
        payload,
    };
    let job = match front.queue.enqueue(new.clone()).await {
        Err(StoreError::UnknownUser(_)) => {
            // First job of this user on this queue: register their caps.
            front
                .queue
                .set_user(front.first_limits(user))
                .await
                .map_err(ApiError::from)?;
            front.queue.enqueue(new).await
        }
        other => other,
    }
    .map_err(ApiError::from)?;
    front.dispatcher.wake();
    front.positions.nudge();
    tracing::info!(job = job.id, kind = ?job.workflow_kind, "prompt queued");
    Ok(json!({"prompt_id": prompt_id, "number": job.id, "node_errors": {}}))
}

fn unavailable(reason: String) -> PromptError {
    let mut refusal = PromptError::new(
        "prompt_not_checked",
        format!(
            "Your workflow could not be checked, so it was not queued: {reason}. Try again in a moment."
        ),
        reason,
    );
    refusal.status = StatusCode::SERVICE_UNAVAILABLE;
    refusal
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn title(node: &Value) -> Option<&str> {
    node.pointer("/_meta/title").and_then(Value::as_str)
}

/// Every node has a known class; at least one is an output.
fn check_nodes(front: &Front, prompt: &Value) -> Result<(), PromptError> {
    let Some(nodes) = prompt.as_object() else {
        return Ok(());
    };
    let mut has_output = false;
    for (id, node) in nodes {
        let Some(class) = node.get("class_type").and_then(Value::as_str) else {
            return Err(PromptError::with_info(
                "missing_node_type",
                format!(
                    "Node 'ID #{id}' has no class_type. The workflow may be corrupted or a custom node is missing."
                ),
                format!("Node ID '#{id}'"),
                json!({"node_id": id, "class_type": null, "node_title": title(node)}),
            ));
        };
        if !front.catalogue.knows(class) {
            let name = title(node).map_or_else(|| format!("ID #{id}"), str::to_owned);
            return Err(PromptError::with_info(
                "missing_node_type",
                format!(
                    "Node '{name}' not found. This workshop's GPUs do not have that node installed."
                ),
                format!("Node ID '#{id}'"),
                json!({"node_id": id, "class_type": class, "node_title": title(node)}),
            ));
        }
        has_output |= front.catalogue.is_output(class);
    }
    if !has_output {
        return Err(PromptError::new(
            "prompt_no_outputs",
            "Prompt has no outputs",
            "",
        ));
    }
    Ok(())
}

/// Every loader names the attendee's own file or one the workshop ships.
async fn check_inputs(front: &Front, user: &Identity, prompt: &Value) -> Result<(), PromptError> {
    use crate::dispatch::inputs::{InputError, owned_or_shipped};
    let user_dir = front.user_dir(user)?;
    let catalogue = &front.catalogue;
    let checked = owned_or_shipped(&user_dir, prompt, |r| {
        catalogue.offers(&r.class, &r.input, &r.path())
    })
    .await;
    let (node, input) = match checked {
        Ok(()) => return Ok(()),
        Err(InputError::NotYours { node, input, .. }) => (node, input),
        Err(InputError::Unsafe { node, .. }) => {
            let input = crate::dispatch::inputs::FILE_INPUTS
                .iter()
                .find(|key| {
                    prompt
                        .pointer(&format!("/{}/inputs/{key}", pointer_token(&node)))
                        .is_some()
                })
                .map_or("image", |key| *key);
            (node, input.to_string())
        }
        Err(other) => {
            return Err(PromptError::new(
                "invalid_prompt",
                "Invalid prompt",
                other.to_string(),
            ));
        }
    };
    tracing::info!(node = %node, input = %input, "prompt names a file that is not the attendee's");
    let problem = Problem {
        node_id: node.clone(),
        message: "Value not in list".into(),
        input_name: Some(input.clone()),
        type_: ProblemType::ValueNotInList,
    };
    let mut refusal = rejected(front, prompt, std::slice::from_ref(&problem));
    // ComfyUI's own wording: `image: 'x.png' not in [...]`.
    if let Some(error) = refusal
        .body
        .pointer_mut(&format!("/node_errors/{}/errors/0", pointer_token(&node)))
    {
        let value = error
            .pointer("/extra_info/received_value")
            .cloned()
            .unwrap_or(Value::Null);
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        error["details"] = Value::from(format!(
            "{input}: '{shown}' not in (your uploads, your outputs, the workshop's files)"
        ));
    }
    Err(refusal)
}

/// `token` as one JSON pointer segment.
fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// ComfyUI's name for a problem type.
fn problem_type(kind: ProblemType) -> &'static str {
    match kind {
        ProblemType::ValueBiggerThanMax => "value_bigger_than_max",
        ProblemType::ValueSmallerThanMin => "value_smaller_than_min",
        ProblemType::ValueNotInList => "value_not_in_list",
        ProblemType::ValueNotValid => "value_not_valid",
        ProblemType::RequiredInputMissing => "required_input_missing",
        ProblemType::InvalidInputType => "invalid_input_type",
        ProblemType::ReturnTypeMismatch => "return_type_mismatch",
        ProblemType::MissingNodeType => "missing_node_type",
        ProblemType::CustomValidationFailed => "custom_validation_failed",
    }
}

/// Most problems reported back; a validator may list one per input.
const MAX_PROBLEMS: usize = 500;

/// The validator's problems as ComfyUI's `prompt_outputs_failed_validation`,
/// in time linear in the prompt ([`dependent_outputs`]).
fn rejected(front: &Front, prompt: &Value, problems: &[Problem]) -> PromptError {
    let empty = Map::new();
    let nodes = prompt.as_object().unwrap_or(&empty);
    let problems = &problems[..problems.len().min(MAX_PROBLEMS)];
    let bad: Vec<&str> = problems.iter().map(|p| p.node_id.as_str()).collect();
    let dependents = dependent_outputs(nodes, &bad, |node| {
        node.get("class_type")
            .and_then(Value::as_str)
            .is_some_and(|c| front.catalogue.is_output(c))
    });
    let mut node_errors: BTreeMap<String, Value> = BTreeMap::new();
    for problem in problems {
        let node = nodes.get(&problem.node_id);
        let class_type = node
            .and_then(|n| n.get("class_type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let dependent = dependents
            .get(&problem.node_id)
            .cloned()
            .unwrap_or_default();
        let entry = node_errors.entry(problem.node_id.clone()).or_insert_with(
            || json!({"errors": [], "dependent_outputs": dependent, "class_type": class_type}),
        );
        let input = problem.input_name.clone().unwrap_or_default();
        let mut extra = json!({});
        if !input.is_empty() {
            extra["input_name"] = Value::from(input.clone());
            if let Some(value) = node
                .and_then(|n| n.get("inputs"))
                .and_then(|inputs| inputs.get(&input))
            {
                extra["received_value"] = value.clone();
            }
        }
        if let Some(errors) = entry.get_mut("errors").and_then(Value::as_array_mut) {
            errors.push(json!({
                "type": problem_type(problem.type_),
                "message": problem.message,
                "details": input,
                "extra_info": extra,
            }));
        }
    }
    PromptError {
        status: StatusCode::BAD_REQUEST,
        body: json!({
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": node_errors,
        }),
        retry_after: None,
    }
}
