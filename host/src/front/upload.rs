//! Receiving one uploaded file: streamed to disk, checked as it comes and
//! once whole, inside the attendee's quota and the disk's watermark.
//!
//! Policy:
//! - The file is never held in memory: each chunk of the form field goes
//!   to a private temporary file in the attendee's own folder (hidden, so
//!   no listing shows it; removed if anything fails), and only its first
//!   [`HEAD`] bytes are kept, to sniff. A body that is not a PNG, JPEG,
//!   WebP or GIF is refused on its first bytes, before the rest is read; a
//!   header over `attendees.max_upload_megapixels` as soon as the header
//!   has arrived; more bytes than `attendees.max_upload_mib` as soon as
//!   they pass it.
//! - Once whole, the file's structure is checked on a blocking thread in
//!   constant memory ([`check_structure`]): a PNG is a chain of chunks with
//!   valid CRCs ending in `IEND` (a PNG header followed by 50 MiB of zeros
//!   is refused), a WebP's RIFF length is its size.
//! - Each attendee keeps at most `attendees.max_upload_files` files and
//!   `attendees.max_upload_total_mib` in their input folder, and no upload
//!   is taken while the data disk has less than
//!   `attendees.min_free_disk_mib` free: each refusal says which, in a
//!   sentence.
//! - The upload's SHA-256 is computed as it streams, so a same-name upload
//!   is compared with earlier files of the same size only, by hash.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use axum::extract::multipart::Field;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::ApiError;

/// Bytes kept in memory to sniff the type and read the dimensions (a JPEG's
/// size can come after 64 KiB of EXIF).
pub const HEAD: usize = 128 * 1024;

/// The caps one upload is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Largest image, in pixels.
    pub max_pixels: u64,
}

/// An upload on disk, not yet in its place; removed when dropped.
pub struct Received {
    /// The temporary file.
    pub file: tempfile::TempPath,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// Streams `field` into a hidden temporary file in `dir`, sniffing and
/// capping as it goes; then checks the whole file's structure.
pub async fn receive(mut field: Field<'_>, dir: &Path, caps: Caps) -> Result<Received, ApiError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| ApiError::io("your folder", e))?;
    let temp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(dir)
        .map_err(|e| ApiError::io("your folder", e))?;
    let (std_file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(std_file);
    let mut head: Vec<u8> = Vec::new();
    let mut kind_checked = false;
    let mut size_checked = false;
    let mut size = 0u64;
    let mut hasher = Sha256::new();
    while let Some(chunk) = field.chunk().await.map_err(super::files::multipart)? {
        size += chunk.len() as u64;
        if size > caps.max_bytes {
            return Err(ApiError::TooLarge(format!(
                "the file is larger than {} MiB",
                caps.max_bytes >> 20
            )));
        }
        if head.len() < HEAD {
            let take = (HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        if !kind_checked && head.len() >= 16 {
            image_kind(&head)?;
            kind_checked = true;
        }
        if !size_checked && let Some(result) = dimensions(&head, caps) {
            result?;
            size_checked = true;
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::io("storing your upload", e))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::io("storing your upload", e))?;
    drop(file);
    let kind = image_kind(&head)?;
    if !size_checked {
        // The whole file is shorter than the head: its dimensions are in it.
        dimensions(&head, caps).unwrap_or_else(|| Err(not_an_image()))?;
    }
    let checked = path.to_path_buf();
    tokio::task::spawn_blocking(move || check_structure(&checked, kind, size))
        .await
        .map_err(|e| ApiError::Unavailable(format!("checking your upload: {e}")))??;
    Ok(Received {
        file: path,
        size,
        sha256: hasher.finalize().into(),
    })
}

/// The accepted image kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// GIF.
    Gif,
}

fn image_kind(head: &[u8]) -> Result<Kind, ApiError> {
    use imagesize::ImageType;
    match imagesize::image_type(head) {
        Ok(ImageType::Png) => Ok(Kind::Png),
        Ok(ImageType::Jpeg) => Ok(Kind::Jpeg),
        Ok(ImageType::Webp) => Ok(Kind::Webp),
        Ok(ImageType::Gif) => Ok(Kind::Gif),
        _ => Err(not_an_image()),
    }
}

/// The pixel check, once `head` holds the dimensions (`None` until then).
fn dimensions(head: &[u8], caps: Caps) -> Option<Result<(), ApiError>> {
    let size = imagesize::blob_size(head).ok()?;
    let pixels = size.width as u64 * size.height as u64;
    Some(if pixels == 0 || pixels > caps.max_pixels {
        Err(ApiError::BadRequest(format!(
            "the image is {}×{}; at most {} megapixels are accepted",
            size.width,
            size.height,
            caps.max_pixels / 1_000_000
        )))
    } else {
        Ok(())
    })
}

/// The refusal of something that is not an image we take.
pub fn not_an_image() -> ApiError {
    ApiError::BadRequest("that file is not a PNG, JPEG, WebP or GIF image".into())
}

fn corrupt(what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "that image is damaged or not what it claims: {what}"
    ))
}

/// Checks the structure of the file at `path` in constant memory.
pub fn check_structure(path: &Path, kind: Kind, size: u64) -> Result<(), ApiError> {
    let file = std::fs::File::open(path).map_err(|e| ApiError::io("checking your upload", e))?;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, file);
    match kind {
        Kind::Png => check_png(&mut reader),
        Kind::Webp => {
            let mut header = [0u8; 8];
            reader
                .read_exact(&mut header)
                .map_err(|_| corrupt("too short"))?;
            let declared = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            // The RIFF length counts what follows its 8-byte header (even).
            if u64::from(declared) + 8 != size && u64::from(declared) + 9 != size {
                return Err(corrupt("its length is not the file's"));
            }
            Ok(())
        }
        Kind::Jpeg | Kind::Gif => Ok(()),
    }
}

/// A PNG: the signature, then chunks (length, type, data, CRC) with valid
/// CRCs, the first `IHDR`, up to `IEND`.
fn check_png(reader: &mut impl std::io::Read) -> Result<(), ApiError> {
    let mut signature = [0u8; 8];
    reader
        .read_exact(&mut signature)
        .map_err(|_| corrupt("too short"))?;
    let mut first = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|_| corrupt("it ends before its IEND chunk"))?;
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        if length > 0x7fff_ffff || !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(corrupt("a chunk header is invalid"));
        }
        if first && &kind != b"IHDR" {
            return Err(corrupt("it does not start with IHDR"));
        }
        first = false;
        let mut crc = flate2::Crc::new();
        crc.update(&kind);
        let mut left = length as usize;
        while left > 0 {
            let n = left.min(buf.len());
            reader
                .read_exact(&mut buf[..n])
                .map_err(|_| corrupt("a chunk is cut short"))?;
            crc.update(&buf[..n]);
            left -= n;
        }
        let mut stored = [0u8; 4];
        reader
            .read_exact(&mut stored)
            .map_err(|_| corrupt("a chunk is cut short"))?;
        if crc.sum() != u32::from_be_bytes(stored) {
            return Err(corrupt("a chunk's checksum is wrong"));
        }
        if &kind == b"IEND" {
            // Bytes after IEND are ignored by every decoder (and by the
            // browser: the file is served as the image its header says).
            return Ok(());
        }
    }
}

/// Files and bytes in `dir` and below (symlinks not followed).
pub async fn usage(dir: &Path) -> (usize, u64) {
    let mut stack = vec![dir.to_path_buf()];
    let (mut files, mut bytes) = (0usize, 0u64);
    while let Some(folder) = stack.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&folder).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(meta) = tokio::fs::symlink_metadata(entry.path()).await else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

/// Free bytes on the filesystem holding `path` (`None` if unknown).
pub fn free_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(path).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The SHA-256 of the file at `path`, read in chunks.
pub fn sha256_of(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

/// Where an upload named `name` goes in `dir`: the name if free or holding
/// the same bytes, else `stem (n).ext`. Earlier files are compared only
/// when their size matches, by hash.
pub async fn place(dir: &Path, name: &str, received: &Received, overwrite: bool) -> PathBuf {
    let first = dir.join(name);
    if overwrite {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) => (stem.to_string(), format!(".{ext}")),
        None => (name.to_string(), String::new()),
    };
    let mut candidate = first;
    for n in 1..1000 {
        match tokio::fs::metadata(&candidate).await {
            Err(_) => return candidate,
            Ok(meta) if meta.len() == received.size => {
                let path = candidate.clone();
                let same = tokio::task::spawn_blocking(move || sha256_of(&path))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    == Some(received.sha256);
                if same {
                    return candidate;
                }
            }
            Ok(_) => {}
        }
        candidate = dir.join(format!("{stem} ({n}){ext}"));
    }
    dir.join(format!("{stem} ({}){ext}", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbaImage::from_pixel(4, 4, image::Rgba([1, 2, 3, 255]))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn a_real_png_passes_and_a_header_with_zeros_does_not() {
        let good = png();
        assert!(check_png(&mut good.as_slice()).is_ok());
        let mut zeros = good[..33].to_vec(); // signature + IHDR chunk
        zeros.resize(1 << 20, 0);
        assert!(check_png(&mut zeros.as_slice()).is_err());
        let mut cut = good.clone();
        cut.truncate(good.len() - 12); // without IEND
        assert!(check_png(&mut cut.as_slice()).is_err());
        let mut flipped = good.clone();
        let last = flipped.len() - 20;
        flipped[last] ^= 0xff;
        assert!(check_png(&mut flipped.as_slice()).is_err());
    }
}
