//! `ferry get EP:PATH [LOCAL|-]`: one file over HTTPS through the hub with
//! the caller's token, no endpoint needed on this machine.
//!
//! A download goes to `LOCAL.part` and is renamed to LOCAL only once its
//! size is the file's. The file's ETag is kept beside it in
//! `LOCAL.part.etag`, so a later run resumes with `Range` and `If-Range`:
//! if the file changed meanwhile, the hub sends it whole and the part is
//! started over.

use crate::hub::{path_segment, session, split_target};
use crate::{Invocation, client_runtime};
use anyhow::{Context, bail};
use ferry_setup::hub_client::Auth;
use std::ffi::OsString;
use std::io::{IsTerminal, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Longest ETag kept for a resume.
const MAX_ETAG: usize = 256;

/// The URL path of `path` on `endpoint`: each byte the hub would read as
/// a separator or escape is percent-encoded, `/` stays.
pub(crate) fn file_url(endpoint: &str, path: &[u8]) -> String {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    let encoded: String = rest
        .split(|b| *b == b'/')
        .map(|seg| match std::str::from_utf8(seg) {
            Ok(text) => path_segment(text),
            Err(_) => seg.iter().map(|b| format!("%{b:02X}")).collect(),
        })
        .collect::<Vec<_>>()
        .join("/");
    format!(
        "/api/v1/endpoints/{}/files/{encoded}",
        path_segment(endpoint)
    )
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Where a download of `remote` lands when no LOCAL is given: its last
/// component, in the current directory.
fn default_local(remote: &[u8]) -> anyhow::Result<PathBuf> {
    let name = remote
        .rsplit(|b| *b == b'/')
        .find(|c| !c.is_empty())
        .filter(|c| *c != b"." && *c != b".." && *c != b"~")
        .ok_or_else(|| {
            crate::UsageError("the remote path names no file; give LOCAL (or - for stdout)".into())
        })?;
    Ok(PathBuf::from(OsString::from_vec(name.to_vec())))
}

pub fn get(
    inv: &Invocation,
    target: &OsString,
    local: Option<&OsString>,
) -> anyhow::Result<ExitCode> {
    let (endpoint, path) = split_target(target)?;
    let url = file_url(&endpoint, path.as_bytes());
    let to_stdout = local.is_some_and(|l| l.as_bytes() == b"-");
    let runtime = client_runtime()?;
    runtime.block_on(async {
        let (client, token) = session(inv).await?;
        if to_stdout {
            let mut response = client.get_file(&url, Auth::Bearer(&token), &[]).await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = response.chunk().await.context("the download was cut")? {
                out.write_all(&chunk).context("cannot write to stdout")?;
            }
            out.flush().context("cannot write to stdout")?;
            return Ok(ExitCode::SUCCESS);
        }
        // A folder, as for `scp` and `cp`: the remote file's name in it.
        let local = match local {
            Some(l) if Path::new(l).is_dir() => Path::new(l).join(default_local(path.as_bytes())?),
            Some(l) => PathBuf::from(l),
            None => default_local(path.as_bytes())?,
        };
        let part = with_suffix(&local, ".part");
        let etag_file = with_suffix(&local, ".part.etag");
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let etag = std::fs::read_to_string(&etag_file)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && t.len() <= MAX_ETAG);
        let mut headers = Vec::new();
        if let (true, Some(tag)) = (have > 0, &etag) {
            headers.push(("range", format!("bytes={have}-")));
            headers.push(("if-range", tag.clone()));
        }
        let mut response = client
            .get_file(&url, Auth::Bearer(&token), &headers)
            .await?;
        let status = response.status().as_u16();
        let total;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        let mut got = match status {
            206 => {
                total = content_range_total(
                    response
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok()),
                )
                .context("the hub's partial answer has no total size")?;
                file.seek(std::io::SeekFrom::Start(have))?;
                have
            }
            // The whole requested range is already here.
            416 => {
                total = content_range_total(
                    response
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok()),
                )
                .context("the hub's answer has no total size")?;
                if have != total {
                    bail!(
                        "{} holds more than the file; remove it and try again",
                        part.display()
                    );
                }
                have
            }
            200 => {
                total = response
                    .content_length()
                    .context("the hub's answer has no length")?;
                file.set_len(0)?;
                file.seek(std::io::SeekFrom::Start(0))?;
                if let Some(tag) = response.headers().get("etag").and_then(|v| v.to_str().ok()) {
                    std::fs::write(&etag_file, tag)
                        .with_context(|| format!("cannot write {}", etag_file.display()))?;
                }
                0
            }
            other => bail!("unexpected answer from the hub: HTTP {other}"),
        };
        let started = Instant::now();
        let from = got;
        let terminal = std::io::stderr().is_terminal();
        let mut shown = Instant::now();
        while let Some(chunk) = response
            .chunk()
            .await
            .context("the download was cut; run the same command again to resume")?
        {
            file.write_all(&chunk)
                .with_context(|| format!("cannot write {}", part.display()))?;
            got += chunk.len() as u64;
            if terminal && shown.elapsed().as_millis() >= 250 {
                shown = Instant::now();
                progress(got, total, from, started);
            }
        }
        if terminal {
            progress(got, total, from, started);
            eprintln!();
        }
        file.sync_all()
            .with_context(|| format!("cannot write {}", part.display()))?;
        let size = file.metadata()?.len();
        if size != total {
            bail!(
                "{} has {size} bytes, the file {total}; run the same command again to resume",
                part.display()
            );
        }
        std::fs::rename(&part, &local)
            .with_context(|| format!("cannot rename {} to {}", part.display(), local.display()))?;
        let _ = std::fs::remove_file(&etag_file);
        Ok(ExitCode::SUCCESS)
    })
}

/// The total of `Content-Range: bytes A-B/TOTAL` (or `bytes */TOTAL`).
fn content_range_total(value: Option<&str>) -> Option<u64> {
    value?.rsplit_once('/')?.1.trim().parse().ok()
}

/// `12.0 MiB of 24.0 MiB, 3.1 MiB/s` on one rewritten line.
fn progress(got: u64, total: u64, from: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = ((got - from) as f64 / secs) as u64;
    eprint!(
        "\r{} of {}, {}/s   ",
        ferry_proto::human::bytes(got),
        ferry_proto::human::bytes(total),
        ferry_proto::human::bytes(rate)
    );
}

/// Bytes one `PUT` carries: small enough to arrive within the hub's body
/// deadline on a slow link, large enough to keep a fast one busy.
const PIECE: u64 = 32 * 1024 * 1024;

/// `ferry put LOCAL EP:PATH`: uploads in pieces under an id derived from
/// the target and the local file's size and modification time, so running
/// it again after an interruption continues where the hub says the upload
/// stands; the last piece carries the file's SHA-256.
pub fn put(inv: &Invocation, local: &OsString, target: &OsString) -> anyhow::Result<ExitCode> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::{FileExt, MetadataExt};
    let (endpoint, path) = split_target(target)?;
    // A folder (a trailing `/`), as for `scp` and `cp`: the local file's
    // name in it.
    let path = if path.as_bytes().ends_with(b"/") {
        let name = Path::new(local).file_name().ok_or_else(|| {
            crate::UsageError(format!(
                "{} names no file to upload",
                Path::new(local).display()
            ))
        })?;
        let mut joined = path.as_bytes().to_vec();
        joined.extend_from_slice(name.as_bytes());
        ferry_proto::wire_path::WirePath::from_bytes(joined)
    } else {
        path
    };
    let file = std::fs::File::open(local)
        .with_context(|| format!("cannot read {}", Path::new(local).display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", Path::new(local).display());
    }
    let total = meta.len();
    let mut id_hash = Sha256::new();
    id_hash.update(target.as_bytes());
    id_hash.update(format!("\n{total}\n{}.{}", meta.mtime(), meta.mtime_nsec()));
    let id: String = id_hash
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("{}?upload={id}", file_url(&endpoint, path.as_bytes()));
    // The whole file's digest first: the hub checks it on the last piece.
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut at = 0u64;
    while at < total {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            bail!("{} shrank while it was read", Path::new(local).display());
        }
        digest.update(&buf[..n]);
        at += n as u64;
    }
    let repr = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest.finalize())
    );
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let head = client.head_file(&url, Auth::Bearer(&token)).await?;
        let mut offset = upload_offset(&head).unwrap_or(0).min(total);
        let started = Instant::now();
        let from = offset;
        let terminal = std::io::stderr().is_terminal();
        loop {
            let length = PIECE.min(total - offset);
            let mut body = vec![0u8; usize::try_from(length)?];
            file.read_exact_at(&mut body, offset)
                .with_context(|| format!("cannot read {}", Path::new(local).display()))?;
            let mut headers = vec![("content-length", length.to_string())];
            if total > 0 {
                headers.push((
                    "content-range",
                    format!("bytes {offset}-{}/{total}", offset + length - 1),
                ));
            }
            if offset + length == total {
                headers.push(("repr-digest", repr.clone()));
            }
            let answer = client
                .put_file(&url, Auth::Bearer(&token), &headers, body)
                .await
                .context("the upload was cut; run the same command again to resume")?;
            let status = answer.status().as_u16();
            let stands = upload_offset(&answer);
            match (status, stands) {
                (201, _) => break,
                (204 | 409, Some(n)) if n <= total => offset = n,
                _ => bail!("unexpected answer from the hub: HTTP {status}"),
            }
            if terminal {
                progress(offset, total, from, started);
            }
        }
        if terminal {
            progress(total, total, from, started);
            eprintln!();
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn upload_offset(response: &ferry_setup::hub_client::FileResponse) -> Option<u64> {
    response
        .headers()
        .get("upload-offset")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
