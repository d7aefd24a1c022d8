//! Turning the queue's job changes into the messages a ComfyUI server
//! sends on `/ws`, for one socket.
//!
//! Policy: the GPU side reports states and step progress, not every node,
//! so a job is told as ComfyUI tells a prompt whose earlier nodes were
//! cached: `execution_start`, `execution_cached`, `executing` on the
//! sampler, `progress` / `progress_state` while it samples, `executed` per
//! output node, then `execution_success` (or `execution_error` with the
//! reason, or `execution_interrupted`), `status`, and `executing` with
//! `node: null`, which is what the editor waits for. A job that is
//! requeued (a spot reclaim) starts again with `execution_start` when it is
//! dispatched again.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::front::jobs::shape;
use crate::queue::{Job, JobEvent, JobState};

/// What one socket knows about the jobs it has told.
#[derive(Default)]
pub struct Teller {
    /// Prompt id → the node shown as executing (once started).
    started: HashMap<String, Option<String>>,
}

/// A message as `(type, data)`.
pub type Message = (&'static str, Value);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The node a job's progress is shown on: its sampler, else its first
/// output node, else none.
pub fn progress_node(payload: &Value) -> Option<String> {
    let prompt = payload.get("prompt").unwrap_or(payload).as_object()?;
    let class = |body: &Value| {
        body.get("class_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut ids: Vec<&String> = prompt.keys().collect();
    ids.sort();
    ids.iter()
        .find(|id| class(&prompt[id.as_str()]).contains("Sampler"))
        .or_else(|| {
            ids.iter()
                .find(|id| class(&prompt[id.as_str()]).starts_with("Save"))
        })
        .map(|id| id.to_string())
}

impl Teller {
    /// True once the socket has told this job's start.
    pub fn knows(&self, prompt_id: &str) -> bool {
        self.started.contains_key(prompt_id)
    }

    /// What to send for `event`. `job` is the job as stored now (needed for
    /// outputs and reasons), `node` the node progress is shown on, and
    /// `remaining` the user's unfinished jobs.
    pub fn tell(
        &mut self,
        event: &JobEvent,
        job: Option<&Job>,
        node: impl FnOnce() -> Option<String>,
        remaining: usize,
    ) -> Vec<Message> {
        let prompt_id = event.prompt_id.as_str();
        let status = (
            "status",
            json!({"status": {"exec_info": {"queue_remaining": remaining}}}),
        );
        let mut out = Vec::new();
        match event.state {
            JobState::Queued => {
                // New, or back in the queue after a lost GPU.
                self.started.remove(prompt_id);
                out.push(status);
            }
            JobState::Leased => {}
            JobState::Dispatched | JobState::Running => {
                let node = self.start(prompt_id, node, &mut out);
                if let Some(progress) = event.progress.filter(|p| p.max > 0) {
                    out.push((
                        "progress",
                        json!({"value": progress.value, "max": progress.max, "prompt_id": prompt_id, "node": node}),
                    ));
                    if let Some(node) = &node {
                        out.push((
                            "progress_state",
                            json!({"prompt_id": prompt_id, "nodes": {node.as_str(): {
                                "value": progress.value, "max": progress.max, "state": "running",
                                "node_id": node, "prompt_id": prompt_id, "display_node_id": node,
                                "parent_node_id": null, "real_node_id": node,
                            }}}),
                        ));
                    }
                }
            }
            JobState::Succeeded | JobState::Failed | JobState::Dead | JobState::Cancelled => {
                self.start(prompt_id, node, &mut out);
                self.started.remove(prompt_id);
                if let Some(job) = job {
                    out.extend(finish(job));
                }
                out.push(status);
                out.push(("executing", json!({"node": null, "prompt_id": prompt_id})));
            }
        }
        out
    }

    /// `execution_start` (once per dispatch) and the executing node.
    fn start(
        &mut self,
        prompt_id: &str,
        node: impl FnOnce() -> Option<String>,
        out: &mut Vec<Message>,
    ) -> Option<String> {
        if let Some(node) = self.started.get(prompt_id) {
            return node.clone();
        }
        let node = node();
        let at = now_ms();
        out.push((
            "execution_start",
            json!({"prompt_id": prompt_id, "timestamp": at}),
        ));
        out.push((
            "execution_cached",
            json!({"nodes": [], "prompt_id": prompt_id, "timestamp": at}),
        ));
        if let Some(node) = &node {
            out.push((
                "executing",
                json!({"node": node, "display_node": node, "prompt_id": prompt_id}),
            ));
        }
        self.started.insert(prompt_id.to_string(), node.clone());
        node
    }
}

/// The closing messages of a finished job.
fn finish(job: &Job) -> Vec<Message> {
    let prompt_id = &job.prompt_id;
    match job.state {
        JobState::Succeeded => {
            let mut out: Vec<Message> = shape::outputs(job)
                .into_iter()
                .map(|(node, output)| {
                    (
                        "executed",
                        json!({"node": node, "display_node": node, "output": output, "prompt_id": prompt_id}),
                    )
                })
                .collect();
            out.push((
                "execution_success",
                json!({"prompt_id": prompt_id, "timestamp": job.updated_at_ms}),
            ));
            out
        }
        JobState::Failed | JobState::Dead => vec![("execution_error", shape::execution_error(job))],
        JobState::Cancelled => vec![("execution_interrupted", shape::execution_interrupted(job))],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{NewJob, Output, Priority, Progress};

    fn job(state: JobState) -> Job {
        let mut job = Job::new(
            7,
            &NewJob {
                user: "ann".into(),
                prompt_id: "0b3a1c4e-0000-4000-8000-000000000001".into(),
                client_id: None,
                priority: Priority::Normal,
                workflow_kind: "flux2-klein".into(),
                cost: Default::default(),
                payload: vec![],
            },
            1,
        );
        job.state = state;
        job
    }

    fn event(job: &Job, progress: Option<Progress>) -> JobEvent {
        JobEvent {
            id: job.id,
            prompt_id: job.prompt_id.clone(),
            user: job.user.clone(),
            state: job.state,
            progress,
        }
    }

    fn types(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn a_job_is_told_as_comfyui_tells_a_prompt() {
        let mut teller = Teller::default();
        let queued = job(JobState::Queued);
        assert_eq!(
            types(&teller.tell(&event(&queued, None), None, || None, 1)),
            ["status"]
        );
        let running = job(JobState::Running);
        let first = teller.tell(
            &event(&running, Some(Progress { value: 1, max: 4 })),
            None,
            || Some("3".into()),
            1,
        );
        assert_eq!(
            types(&first),
            [
                "execution_start",
                "execution_cached",
                "executing",
                "progress",
                "progress_state"
            ]
        );
        assert_eq!(first[3].1["node"], "3");
        let again = teller.tell(
            &event(&running, Some(Progress { value: 2, max: 4 })),
            None,
            || panic!("the node is remembered"),
            1,
        );
        assert_eq!(types(&again), ["progress", "progress_state"]);
        let mut done = job(JobState::Succeeded);
        done.outputs = vec![Output {
            node_id: "9".into(),
            filename: "0b3a1c4e_x_00001_.png".into(),
            subfolder: String::new(),
            kind: "output".into(),
            animated: false,
        }];
        let last = teller.tell(&event(&done, None), Some(&done), || None, 0);
        assert_eq!(
            types(&last),
            ["executed", "execution_success", "status", "executing"]
        );
        assert_eq!(
            last[0].1["output"]["images"][0]["filename"],
            "0b3a1c4e_x_00001_.png"
        );
        assert_eq!(last[3].1["node"], Value::Null);
    }

    #[test]
    fn a_failure_carries_its_reason_and_a_late_socket_still_gets_a_start() {
        let mut teller = Teller::default();
        let mut failed = job(JobState::Failed);
        failed.reason = Some("the GPU ran out of memory".into());
        let out = teller.tell(&event(&failed, None), Some(&failed), || None, 0);
        assert_eq!(
            types(&out),
            [
                "execution_start",
                "execution_cached",
                "execution_error",
                "status",
                "executing"
            ]
        );
        assert_eq!(out[2].1["exception_message"], "the GPU ran out of memory");
    }

    #[test]
    fn the_sampler_is_the_progress_node() {
        let payload = json!({"prompt": {
            "9": {"class_type": "SaveImage", "inputs": {}},
            "3": {"class_type": "KSampler", "inputs": {}},
        }});
        assert_eq!(progress_node(&payload).as_deref(), Some("3"));
        let no_sampler = json!({"prompt": {"9": {"class_type": "SaveImage", "inputs": {}}}});
        assert_eq!(progress_node(&no_sampler).as_deref(), Some("9"));
    }
}
