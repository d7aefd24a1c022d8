//! The input files a prompt references, read from its owner's folder so the
//! GPU side gets them with the job.
//!
//! Policy:
//! - A loader node (`LoadImage`, `LoadImageMask`, `LoadVideo`, `LoadAudio`,
//!   and any other `Load*` class) names its file in an `image`, `video`,
//!   `audio` or `file` input; ComfyUI may append ` [input]` or ` [output]`.
//!   `[output]` reads from the owner's `output` folder, everything else from
//!   `input` — never anywhere else: a name with `..`, a root, a backslash or
//!   a hidden component is refused, and so is a symlink leaving the folder.
//! - A referenced file that the owner does not have is not an error here:
//!   GPU images ship example inputs (`example.png`), and ComfyUI's own
//!   validation names a missing file precisely.
//! - The total is capped: inputs travel in memory and, for Verda, inline in
//!   one request.

use std::path::Path;

use serde_json::Value;

use super::backend::InputFile;

/// The input names a loader may use for its file.
const FILE_INPUTS: [&str; 4] = ["image", "video", "audio", "file"];

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
    /// Sub folder (`""` for none).
    pub subfolder: String,
    /// File name.
    pub name: String,
    /// Read from the owner's `output` folder (`[output]`) instead of `input`.
    pub from_output: bool,
}

/// Every file the prompt's loader nodes reference, deduplicated, in a
/// stable order.
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
                Some((path, "output]")) => (path, true),
                Some((path, "input]" | "temp]")) => (path, false),
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
                subfolder,
                name,
                from_output,
            });
        }
    }
    found.sort();
    found.dedup_by(|a, b| {
        a.subfolder == b.subfolder && a.name == b.name && a.from_output == b.from_output
    });
    Ok(found)
}

/// Reads the referenced files the owner has, from `<user_dir>/input` (or
/// `output`), up to `max_bytes` in total.
pub async fn gather(
    user_dir: &Path,
    prompt: &Value,
    max_bytes: usize,
) -> Result<Vec<InputFile>, InputError> {
    let mut files = Vec::new();
    let mut total = 0usize;
    for reference in references(prompt)? {
        let root = user_dir.join(if reference.from_output {
            "output"
        } else {
            "input"
        });
        let mut path = root.clone();
        if !reference.subfolder.is_empty() {
            path.push(&reference.subfolder);
        }
        path.push(&reference.name);
        let Some(path) = crate::paths::existing_file_inside(&root, &path).await else {
            continue; // not the owner's: the GPU side may have it
        };
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
            subfolder: reference.subfolder,
            bytes,
        });
    }
    Ok(files)
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
                subfolder: "sub".into(),
                name: "cat.png".into(),
                from_output: false
            }]
        );
        let refs = references(&load("LoadImage", "image", "ComfyUI_0001_.png [output]")).unwrap();
        assert!(refs[0].from_output);
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

    #[tokio::test]
    async fn gather_reads_only_the_owners_files_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("users/alice");
        std::fs::create_dir_all(user.join("input/sub")).unwrap();
        std::fs::write(user.join("input/sub/cat.png"), b"png bytes").unwrap();
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
        });
        let files = gather(&user, &prompt, 1 << 20).await.unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].name, "cat.png");
        assert_eq!(files[0].subfolder, "sub");
        assert_eq!(files[0].bytes, b"png bytes");
        assert_eq!(
            gather(&user, &prompt, 4).await.unwrap_err(),
            InputError::TooLarge { max: 4 }
        );
    }
}
