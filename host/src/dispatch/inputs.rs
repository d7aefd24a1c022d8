//! The input files a prompt references, read from its owner's folder so the
//! GPU side gets them with the job, each job's under a folder of its own.
//!
//! Policy:
//! - A loader node (`LoadImage`, `LoadImageMask`, `LoadVideo`, `LoadAudio`,
//!   and any other `Load*` class) names its file in an `image`, `video`,
//!   `audio` or `file` input; ComfyUI may append ` [input]`, ` [output]` or
//!   ` [temp]`. `[output]` and `[temp]` read from the owner's `output`
//!   folder (where the host stores their outputs, temporary previews
//!   included), everything else from `input` — never anywhere else: a name
//!   with `..`, a root, a backslash or a hidden component is refused, and so
//!   is a symlink leaving the folder.
//! - Attendees share one GPU and its one input folder. So every file the
//!   owner has is sent under `comfyume/<prompt id>/` (a folder no other job
//!   can name: prompt ids are UUIDs the host never shows to anyone else),
//!   and the prompt's loader inputs are rewritten to that path before it is
//!   submitted: an attendee's upload never replaces another's, and a job
//!   reads only its own files.
//! - A name the owner does not have is forwarded unchanged only when it can
//!   name nothing but what the workshop ships in the GPU's input folder: a
//!   plain name outside `comfyume/`. An `[output]`/`[temp]` name (another
//!   attendee's render) or a name inside `comfyume/` (another job's inputs)
//!   fails the job. The attendee front refuses such names earlier, at
//!   submit, in ComfyUI's shape ([`crate::front`]'s prompt check, with
//!   [`owned_or_shipped`]).
//! - The total is capped: inputs travel in memory and, for Verda, inline in
//!   one request.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::backend::InputFile;

/// The input names a loader may use for its file.
pub const FILE_INPUTS: [&str; 4] = ["image", "video", "audio", "file"];

/// The folder of ComfyUI's input folder that holds every job's inputs.
pub const JOBS_FOLDER: &str = "comfyume";

/// Why the inputs could not be gathered: the job fails with this reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    /// A name that would leave the owner's folder.
    #[error("node {node}: input file name {name:?} is not a plain relative path")]
    Unsafe {
        /// The loader node.
        node: String,
        /// The name as the prompt gave it.
        name: String,
    },
    /// A name the owner does not have and the workshop does not ship.
    #[error("node {node}: input {input}: {name:?} is not one of your files")]
    NotYours {
        /// The loader node.
        node: String,
        /// The loader's input.
        input: String,
        /// The name as the prompt gave it.
        name: String,
    },
    /// More bytes than the cap.
    #[error("the prompt's input files exceed {max} bytes")]
    TooLarge {
        /// The cap.
        max: usize,
    },
    /// The file exists but cannot be read.
    #[error("reading input {name:?}: {detail}")]
    Unreadable {
        /// The name.
        name: String,
        /// Why.
        detail: String,
    },
}

/// One file reference found in a prompt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputRef {
    /// The loader node's id.
    pub node: String,
    /// The loader's class.
    pub class: String,
    /// The loader's input holding the name (`image`, `video`, …).
    pub input: String,
    /// The value as the prompt gave it (annotation included).
    pub raw: String,
    /// Sub folder (`""` for none).
    pub subfolder: String,
    /// File name.
    pub name: String,
    /// Read from the owner's `output` folder (`[output]` or `[temp]`)
    /// instead of `input`.
    pub from_output: bool,
}

impl InputRef {
    /// `subfolder/name`.
    pub fn path(&self) -> String {
        if self.subfolder.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.subfolder, self.name)
        }
    }

    /// The file in the owner's folder, if they have it.
    pub async fn owned(&self, user_dir: &Path) -> Option<PathBuf> {
        let root = user_dir.join(if self.from_output { "output" } else { "input" });
        let path = crate::paths::join_plain(&root, &self.subfolder, &self.name)?;
        crate::paths::existing_file_inside(&root, &path).await
    }

    /// True if the name, not being the owner's, can still only name a file
    /// the workshop ships: a plain (or `[input]`) name outside the jobs'
    /// folder.
    pub fn may_be_shipped(&self) -> bool {
        !self.from_output && self.subfolder.split('/').next() != Some(JOBS_FOLDER)
    }
}

/// Every file reference of the prompt's loader nodes, in a stable order.
pub fn references(prompt: &Value) -> Result<Vec<InputRef>, InputError> {
    let mut found = Vec::new();
    let Some(nodes) = prompt.as_object() else {
        return Ok(found);
    };
    for (node, body) in nodes {
        let class = body.get("class_type").and_then(Value::as_str).unwrap_or("");
        if !class.starts_with("Load") {
            continue;
        }
        for key in FILE_INPUTS {
            let Some(raw) = body
                .pointer(&format!("/inputs/{key}"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let (path, from_output) = match raw.rsplit_once(" [") {
                Some((path, "output]" | "temp]")) => (path, true),
                Some((path, "input]")) => (path, false),
                _ => (raw, false),
            };
            let unsafe_name = || InputError::Unsafe {
                node: node.clone(),
                name: raw.to_string(),
            };
            let relative = crate::paths::plain_relative(path).ok_or_else(unsafe_name)?;
            let (subfolder, name) = match relative.rsplit_once('/') {
                Some((sub, name)) => (sub.to_string(), name.to_string()),
                None => (String::new(), relative),
            };
            found.push(InputRef {
                node: node.clone(),
                class: class.to_string(),
                input: key.to_string(),
                raw: raw.to_string(),
                subfolder,
                name,
                from_output,
            });
        }
    }
    found.sort();
    Ok(found)
}

/// Checks every loader reference at submit: each names a file the owner
/// has, or (`shipped` says) one the workshop ships. The first that does not
/// is returned as [`InputError::NotYours`] (or `Unsafe`).
pub async fn owned_or_shipped(
    user_dir: &Path,
    prompt: &Value,
    shipped: impl Fn(&InputRef) -> bool,
) -> Result<(), InputError> {
    for reference in references(prompt)? {
        if reference.owned(user_dir).await.is_some() {
            continue;
        }
        if reference.may_be_shipped() && shipped(&reference) {
            continue;
        }
        return Err(InputError::NotYours {
            node: reference.node,
            input: reference.input,
            name: reference.raw,
        });
    }
    Ok(())
}

/// A prompt ready for the GPU: its inputs, and the prompt with its loader
/// inputs pointing at them.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// The files to upload, under `comfyume/<prompt id>/`.
    pub files: Vec<InputFile>,
    /// The prompt, rewritten.
    pub prompt: Value,
}

/// Reads the referenced files the owner has, from `<user_dir>/input` (or
/// `output`), up to `max_bytes` in total, places them under
/// `comfyume/<prompt_id>/` and points the prompt's loaders there.
pub async fn stage(
    user_dir: &Path,
    prompt: &Value,
    prompt_id: &str,
    max_bytes: usize,
) -> Result<Staged, InputError> {
    let mut files: Vec<InputFile> = Vec::new();
    let mut rewritten = prompt.clone();
    let mut total = 0usize;
    for reference in references(prompt)? {
        let Some(path) = reference.owned(user_dir).await else {
            if reference.may_be_shipped() {
                continue; // the workshop's own file, on the GPU image
            }
            return Err(InputError::NotYours {
                node: reference.node,
                input: reference.input,
                name: reference.raw,
            });
        };
        // An input and an output may share a name: they go to separate
        // folders.
        let origin = if reference.from_output {
            "output"
        } else {
            "input"
        };
        let mut subfolder = format!("{JOBS_FOLDER}/{prompt_id}/{origin}");
        if !reference.subfolder.is_empty() {
            subfolder = format!("{subfolder}/{}", reference.subfolder);
        }
        if let Some(value) = rewritten.pointer_mut(&format!(
            "/{}/inputs/{}",
            escape(&reference.node),
            reference.input
        )) {
            *value = Value::from(format!("{subfolder}/{}", reference.name));
        }
        if files
            .iter()
            .any(|f| f.subfolder == subfolder && f.name == reference.name)
        {
            continue;
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| InputError::Unreadable {
                name: reference.name.clone(),
                detail: e.to_string(),
            })?;
        total += bytes.len();
        if total > max_bytes {
            return Err(InputError::TooLarge { max: max_bytes });
        }
        files.push(InputFile {
            name: reference.name,
            subfolder,
            bytes,
        });
    }
    Ok(Staged {
        files,
        prompt: rewritten,
    })
}

/// A node id as one JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(class: &str, key: &str, value: &str) -> Value {
        json!({"7": {"class_type": class, "inputs": {key: value}},
               "8": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x/../y"}}})
    }

    #[test]
    fn loader_names_are_found_with_their_folder() {
        let refs = references(&load("LoadImage", "image", "sub/cat.png [input]")).unwrap();
        assert_eq!(
            refs,
            vec![InputRef {
                node: "7".into(),
                class: "LoadImage".into(),
                input: "image".into(),
                raw: "sub/cat.png [input]".into(),
                subfolder: "sub".into(),
                name: "cat.png".into(),
                from_output: false
            }]
        );
        let refs = references(&load("LoadImage", "image", "ComfyUI_0001_.png [output]")).unwrap();
        assert!(refs[0].from_output);
        let refs = references(&load("LoadImage", "image", "preview_0001_.png [temp]")).unwrap();
        assert!(refs[0].from_output, "[temp] is the owner's outputs too");
        assert!(
            references(&load("SaveImage", "image", "../x"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn names_leaving_the_folder_are_refused() {
        for bad in [
            "../secret.png",
            "/etc/passwd",
            "a/../../b.png",
            ".hidden.png",
            "a\\b.png",
            "",
        ] {
            let error = references(&load("LoadImage", "image", bad)).unwrap_err();
            assert!(
                matches!(error, InputError::Unsafe { .. }),
                "{bad}: {error:?}"
            );
        }
    }

    const ID: &str = "0b5f8a52-6a0c-4b8e-9a53-5b8f0e6b2d11";

    #[tokio::test]
    async fn stage_sends_only_the_owners_files_under_the_jobs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("users/alice");
        std::fs::create_dir_all(user.join("input/sub")).unwrap();
        std::fs::create_dir_all(user.join("output")).unwrap();
        std::fs::write(user.join("input/sub/cat.png"), b"png bytes").unwrap();
        std::fs::write(user.join("output/ab12_render.png"), b"render").unwrap();
        std::fs::write(dir.path().join("users/secret.png"), b"not yours").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            dir.path().join("users/secret.png"),
            user.join("input/link.png"),
        )
        .unwrap();
        let prompt = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "sub/cat.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
            "3": {"class_type": "LoadImage", "inputs": {"image": "link.png"}},
            "4": {"class_type": "LoadImage", "inputs": {"image": "sub/cat.png [input]"}},
            "5": {"class_type": "LoadImageOutput", "inputs": {"image": "ab12_render.png [output]"}},
        });
        let staged = stage(&user, &prompt, ID, 1 << 20).await.unwrap();
        let folder = format!("comfyume/{ID}");
        let sent: Vec<(String, String, Vec<u8>)> = staged
            .files
            .iter()
            .map(|f| (f.subfolder.clone(), f.name.clone(), f.bytes.clone()))
            .collect();
        assert_eq!(
            sent,
            vec![
                (
                    format!("{folder}/input/sub"),
                    "cat.png".into(),
                    b"png bytes".to_vec()
                ),
                (
                    format!("{folder}/output"),
                    "ab12_render.png".into(),
                    b"render".to_vec()
                ),
            ],
            "the same file once; the symlink out of the folder and the shipped file not sent"
        );
        let value = |node: &str| staged.prompt[node]["inputs"]["image"].clone();
        assert_eq!(value("1"), json!(format!("{folder}/input/sub/cat.png")));
        assert_eq!(value("4"), json!(format!("{folder}/input/sub/cat.png")));
        assert_eq!(
            value("5"),
            json!(format!("{folder}/output/ab12_render.png"))
        );
        assert_eq!(
            value("2"),
            json!("example.png"),
            "the workshop's file, unchanged"
        );
        assert_eq!(value("3"), json!("link.png"));
        assert_eq!(
            stage(&user, &prompt, ID, 4).await.unwrap_err(),
            InputError::TooLarge { max: 4 }
        );
    }

    #[tokio::test]
    async fn another_attendees_outputs_and_job_files_are_never_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("users/alice");
        std::fs::create_dir_all(user.join("input")).unwrap();
        for (value, input) in [
            ("Flux2-Klein_00001_.png [output]", "image"),
            ("preview_00001_.png [temp]", "image"),
            (
                "comfyume/1b5f8a52-6a0c-4b8e-9a53-5b8f0e6b2d11/input/p.png",
                "image",
            ),
        ] {
            let prompt = load("LoadImage", input, value);
            let error = stage(&user, &prompt, ID, 1 << 20).await.unwrap_err();
            assert_eq!(
                error,
                InputError::NotYours {
                    node: "7".into(),
                    input: input.into(),
                    name: value.into()
                }
            );
            let at_submit = owned_or_shipped(&user, &prompt, |_| true).await;
            assert_eq!(at_submit.unwrap_err(), error, "refused even if listed");
        }
        let shipped = load("LoadImage", "image", "example.png");
        assert!(
            owned_or_shipped(&user, &shipped, |r| r.name == "example.png")
                .await
                .is_ok()
        );
        let error = owned_or_shipped(&user, &shipped, |_| false)
            .await
            .unwrap_err();
        assert!(matches!(error, InputError::NotYours { .. }), "{error:?}");
    }
}
