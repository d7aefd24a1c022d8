//! Where a job's files live on the host: `<data>/users/<user>/{input,output}`.
//!
//! Policy: a backend's output names are untrusted. A name that is not a
//! plain relative path fails the job (nothing is written); every stored
//! file is prefixed with the job's short prompt id so two jobs never
//! overwrite each other; files are written to a temporary name and renamed,
//! so a crash never leaves half a video under the final name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::backend::Backend;
use super::comfyui::protocol::NodeOutput;
use crate::queue::{Job, Output};

/// `<data>/users/<user>`, if the user name is a plain folder name (the
/// rule is [`crate::auth::valid_user_name`]).
pub fn user_dir(data_dir: &Path, user: &str) -> Option<PathBuf> {
    crate::auth::valid_user_name(user).then(|| data_dir.join("users").join(user))
}

/// `<data>/users/<user>/output`, if the user name is a plain folder name.
pub fn user_output_dir(data_dir: &Path, user: &str) -> Option<PathBuf> {
    user_dir(data_dir, user).map(|dir| dir.join("output"))
}

/// How storing failed: the job fails with this reason, or (for a backend
/// that became unreachable mid-download) is requeued.
pub enum StoreFailure {
    /// The job cannot succeed.
    Failed(String),
    /// The backend is unavailable; the job may run again.
    Lost(String),
}

/// Downloads every output of `backend_id` into the owner's folder.
pub async fn store(
    data_dir: &Path,
    job: &Job,
    backend: &dyn Backend,
    backend_id: &str,
    nodes: &BTreeMap<String, NodeOutput>,
) -> Result<Vec<Output>, StoreFailure> {
    let user_dir = user_output_dir(data_dir, &job.user).ok_or_else(|| {
        StoreFailure::Failed(format!("user name {:?} cannot be a folder", job.user))
    })?;
    let mut outputs = Vec::new();
    for (node, output) in nodes {
        for (file, animated) in output.files() {
            let Some(relative) = file.safe_path() else {
                return Err(StoreFailure::Failed(format!(
                    "the backend named an unsafe output path {:?}",
                    file.filename
                )));
            };
            let bytes = backend
                .download(backend_id, file)
                .await
                .map_err(|e| match e {
                    super::backend::BackendError::Unavailable(reason) => StoreFailure::Lost(reason),
                    other => StoreFailure::Failed(other.to_string()),
                })?;
            let short = &job.prompt_id[..8.min(job.prompt_id.len())];
            let filename = format!("{short}_{}", file.filename);
            let folder = match relative.rsplit_once('/') {
                Some((sub, _)) => user_dir.join(sub),
                None => user_dir.clone(),
            };
            crate::paths::write_atomic(&folder.join(&filename), &bytes)
                .map_err(|e| StoreFailure::Failed(format!("storing {filename}: {e}")))?;
            outputs.push(Output {
                node_id: node.clone(),
                filename,
                subfolder: file.subfolder.clone(),
                kind: file.kind.clone(),
                animated,
            });
        }
    }
    Ok(outputs)
}
