//! Serving one file to the hub over a dial-back connection (HTTPS through
//! the hub; `ferry_proto::file_stream`). The path is opened through the
//! rooted filesystem under config-paths, narrowed by the grant when the
//! hub asks for a grantee, exactly as file operations are: whatever the
//! hub asks, this endpoint decides what it reads.

use crate::hub_dial::{HubStream, dial_hub_via};
use ferry_endpoint::EndpointDir;
use ferry_paths::Temporary;
use ferry_paths::{Policy, RootedFs};
use ferry_proto::file_stream::{self, StreamHead, StreamSend, UploadAsk, UploadEnd, UploadHead};
use ferry_proto::frame;
use ferry_proto::relay::RelayHello;
use ferry_proto::share::ShareGrant;
use ferry_proto::wire_path::WirePath;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the hub has to say which bytes it wants.
const SEND_WITHIN: Duration = Duration::from_secs(60);
/// Bytes read from the file at a time.
const CHUNK: usize = 256 * 1024;
/// Files served and uploads taken at once, whatever the hub asks (the hub
/// bounds them per endpoint too; this holds against a hub that does not).
const MAX_AT_ONCE: usize = 64;
static AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_AT_ONCE);

/// What the hub asked for, and what this endpoint needs to answer.
#[derive(Debug)]
pub(crate) struct FileRequest {
    pub url: String,
    pub dir: EndpointDir,
    pub policy: Arc<Policy>,
    pub home: PathBuf,
    pub token: String,
    pub path: WirePath,
    pub grant: Option<ShareGrant>,
    /// The hub instance to dial back to, if the hub named one.
    pub via: Option<String>,
}

/// Dials back and serves the request; every failure is logged here.
pub(crate) async fn serve(request: FileRequest) {
    let Ok(_slot) = AT_ONCE.try_acquire() else {
        return tracing::warn!("serving {MAX_AT_ONCE} files over HTTPS already; one more refused");
    };
    let hello = RelayHello::Dialback {
        token: request.token.clone(),
    };
    let mut stream =
        match dial_hub_via(&request.url, request.via.as_deref(), &request.dir, &hello).await {
            Ok(s) => s,
            Err(e) => return tracing::warn!(error = %e, "cannot dial the hub back for a file"),
        };
    let path = request.path.clone();
    let grant = request.grant.clone();
    let (policy, home) = (request.policy.clone(), request.home.clone());
    let opened = tokio::task::spawn_blocking(move || open(policy, &home, &path, grant.as_ref()))
        .await
        .unwrap_or_else(|e| Err((format!("cannot open the file: {e}"), false)));
    let outcome = match opened {
        Ok((file, head)) => send(&mut stream, file, head).await,
        Err((message, not_found)) => {
            let head = StreamHead::Failed {
                message: message.clone(),
                not_found,
            };
            let _ = write_frame(&mut stream, &head).await;
            Err(message)
        }
    };
    let how = match &outcome {
        Ok(0) => "checked".to_string(),
        Ok(n) => format!("done, {n} bytes over https"),
        Err(e) => e.clone(),
    };
    ferry_mover::served::operation(
        request.grant.as_ref(),
        "read",
        request.path.as_bytes(),
        None,
        &how,
    );
    let _ = stream.shutdown().await;
}

type Opened = (std::fs::File, StreamHead);

fn open(
    policy: Arc<Policy>,
    home: &std::path::Path,
    path: &WirePath,
    grant: Option<&ShareGrant>,
) -> Result<Opened, (String, bool)> {
    let policy = match grant {
        None => policy,
        Some(grant) => Arc::new(
            ferry_mover::narrowed_policy(&policy, grant).map_err(|e| (e.to_string(), false))?,
        ),
    };
    let resolved =
        ferry_paths::resolve_endpoint_path(home, path.as_bytes()).map_err(|e| (e, false))?;
    let file = RootedFs::new(policy).open_read(&resolved).map_err(|e| {
        // A name beneath a file is as missing as a name beneath nothing.
        let missing = matches!(
            e.io_kind(),
            Some(std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
        );
        (e.to_string(), missing)
    })?;
    let meta = file
        .metadata()
        .map_err(|e| (format!("cannot read {path}: {e}"), false))?;
    if !meta.is_file() {
        return Err((format!("{path} is not a regular file"), false));
    }
    // Size, modification time to the nanosecond, device and inode: a
    // rewrite in place or a replacement by rename both change it.
    let etag = format!(
        "\"{:x}-{:x}.{:x}-{:x}-{:x}\"",
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.dev(),
        meta.ino()
    );
    Ok((
        file,
        StreamHead::File {
            size: meta.size(),
            mtime: meta.mtime(),
            etag,
        },
    ))
}

async fn write_frame<T: serde::Serialize>(
    stream: &mut HubStream,
    message: &T,
) -> Result<(), String> {
    let bytes = file_stream::encode(message).map_err(|e| e.to_string())?;
    stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Sends the head, then the bytes the hub asks for: how many were sent.
async fn send(
    stream: &mut HubStream,
    file: std::fs::File,
    head: StreamHead,
) -> Result<u64, String> {
    let size = match &head {
        StreamHead::File { size, .. } => *size,
        StreamHead::Failed { .. } => 0,
    };
    write_frame(stream, &head).await?;
    let ask = tokio::time::timeout(SEND_WITHIN, async {
        let mut header = [0u8; frame::HEADER_LEN];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| e.to_string())?;
        let len =
            frame::decode_header(header, file_stream::MAX_FRAME).map_err(|e| e.to_string())?;
        let mut body = vec![0u8; len];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        file_stream::decode::<StreamSend>(&body)
    })
    .await
    .map_err(|_| "the hub did not say which bytes it wants".to_string())??;
    if ask.length == 0 {
        return Ok(0);
    }
    let end = ask.offset.checked_add(ask.length);
    if end.is_none_or(|end| end > size) {
        return Err(format!(
            "the hub asked for bytes {}+{} of a {size}-byte file",
            ask.offset, ask.length
        ));
    }
    // Positioned reads off the async threads, one chunk at a time.
    let file = Arc::new(file);
    let mut sent = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while sent < ask.length {
        let want = CHUNK.min(usize::try_from(ask.length - sent).unwrap_or(CHUNK));
        let at = ask.offset + sent;
        let reader = file.clone();
        let (back, n) = tokio::task::spawn_blocking(move || {
            let n = reader.read_at(&mut buf[..want], at);
            (buf, n)
        })
        .await
        .map_err(|e| format!("reading failed: {e}"))?;
        buf = back;
        let n = n.map_err(|e| format!("reading failed: {e}"))?;
        if n == 0 {
            break;
        }
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        sent += n as u64;
    }
    stream.flush().await.map_err(|e| e.to_string())?;
    if sent < ask.length {
        return Err(format!(
            "the file shrank while it was read ({sent} of {} bytes sent)",
            ask.length
        ));
    }
    Ok(sent)
}

/// An upload the hub asked this endpoint to take.
#[derive(Debug)]
pub(crate) struct UploadRequest {
    pub file: FileRequest,
    pub upload: UploadAsk,
}

/// The rooted filesystem an upload is written through, its temporary,
/// that file if it exists, and how many bytes it holds.
type UploadTemporary = (RootedFs, Temporary, Option<std::fs::File>, u64);

/// The temporary an upload lands in, beside its target, opened for
/// writing through the rooted filesystem (created when `create`), and how
/// many bytes it holds.
fn upload_temporary(
    policy: Arc<Policy>,
    home: &std::path::Path,
    path: &WirePath,
    grant: Option<&ShareGrant>,
    id: &str,
    create: bool,
) -> Result<UploadTemporary, (String, bool)> {
    let policy = match grant {
        None => policy,
        Some(grant) => Arc::new(
            ferry_mover::narrowed_policy(&policy, grant).map_err(|e| (e.to_string(), false))?,
        ),
    };
    let resolved =
        ferry_paths::resolve_endpoint_path(home, path.as_bytes()).map_err(|e| (e, false))?;
    let fs = RootedFs::new(policy);
    let temp = Temporary::new(&resolved, &format!("upload{id}"));
    let missing = |e: &ferry_paths::FsError| e.io_kind() == Some(std::io::ErrorKind::NotFound);
    let file = match fs.open_temporary(&temp) {
        Ok(f) => Some(f),
        Err(e) if missing(&e) && create => {
            // Created write-only; opened again to be read back for its digest.
            fs.create_temporary(&temp, 0o666)
                .map_err(|e| (e.to_string(), missing(&e)))?;
            Some(
                fs.open_temporary(&temp)
                    .map_err(|e| (e.to_string(), false))?,
            )
        }
        Err(e) if missing(&e) => {
            // Nothing arrived yet; the target's folder must still be one
            // this endpoint lets the caller write.
            fs.check_removable(&resolved)
                .or_else(|e| if missing(&e) { Ok(()) } else { Err(e) })
                .map_err(|e| (e.to_string(), false))?;
            None
        }
        Err(e) => return Err((e.to_string(), false)),
    };
    let received = match &file {
        Some(f) => f
            .metadata()
            .map_err(|e| (format!("cannot read the upload's temporary: {e}"), false))?
            .len(),
        None => 0,
    };
    Ok((fs, temp, file, received))
}

/// Dials back and takes (part of) an upload; every failure is logged here.
pub(crate) async fn take_upload(request: UploadRequest) {
    let Ok(_slot) = AT_ONCE.try_acquire() else {
        return tracing::warn!("taking {MAX_AT_ONCE} uploads over HTTPS already; one more refused");
    };
    let UploadRequest { file: req, upload } = request;
    let hello = RelayHello::Dialback {
        token: req.token.clone(),
    };
    let mut stream = match dial_hub_via(&req.url, req.via.as_deref(), &req.dir, &hello).await {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "cannot dial the hub back for an upload"),
    };
    let outcome = upload_over(&mut stream, &req, &upload).await;
    let how = match &outcome {
        Ok(Some(end)) => format!("{end:?}"),
        Ok(None) => "checked".to_string(),
        Err(e) => e.clone(),
    };
    ferry_mover::served::operation(req.grant.as_ref(), "write", req.path.as_bytes(), None, &how);
    let _ = stream.shutdown().await;
}

async fn upload_over(
    stream: &mut HubStream,
    req: &FileRequest,
    upload: &UploadAsk,
) -> Result<Option<UploadEnd>, String> {
    let (policy, home, path, grant, id) = (
        req.policy.clone(),
        req.home.clone(),
        req.path.clone(),
        req.grant.clone(),
        upload.id.clone(),
    );
    let create = upload.offset.is_some();
    let opened = tokio::task::spawn_blocking(move || {
        upload_temporary(policy, &home, &path, grant.as_ref(), &id, create)
    })
    .await
    .unwrap_or_else(|e| Err((format!("cannot open the upload: {e}"), false)));
    let (fs, temp, file, received) = match opened {
        Ok(o) => o,
        Err((message, not_found)) => {
            let head = UploadHead::Failed {
                message: message.clone(),
                not_found,
            };
            let _ = write_frame(stream, &head).await;
            return Err(message);
        }
    };
    write_frame(stream, &UploadHead::Ready { received }).await?;
    let (Some(offset), Some(file)) = (upload.offset, file) else {
        return Ok(None);
    };
    let fits = offset
        .checked_add(upload.length)
        .is_some_and(|end| end <= upload.total);
    if offset != received || !fits {
        return Ok(None);
    }
    // The bytes, written where they belong as they arrive.
    let file = Arc::new(file);
    let mut at = offset;
    let end = offset + upload.length;
    let mut buf = vec![0u8; CHUNK];
    while at < end {
        let want = CHUNK.min(usize::try_from(end - at).unwrap_or(CHUNK));
        let n = tokio::time::timeout(SEND_WITHIN, stream.read(&mut buf[..want]))
            .await
            .map_err(|_| "the hub stopped sending".to_string())?
            .map_err(|e| format!("receiving failed: {e}"))?;
        if n == 0 {
            // What arrived stays: a later request continues from there.
            let writer = file.clone();
            let _ = tokio::task::spawn_blocking(move || writer.sync_data()).await;
            return Err(format!("the upload was cut at byte {at}"));
        }
        let chunk = buf[..n].to_vec();
        let writer = file.clone();
        tokio::task::spawn_blocking(move || writer.write_all_at(&chunk, at))
            .await
            .map_err(|e| format!("writing failed: {e}"))?
            .map_err(|e| format!("writing failed: {e}"))?;
        at += n as u64;
    }
    let total = upload.total;
    let expected = upload.sha256.clone();
    let end_frame = tokio::task::spawn_blocking(move || -> UploadEnd {
        if let Err(e) = file.sync_data() {
            return UploadEnd::Failed {
                message: format!("cannot write the upload: {e}"),
            };
        }
        if at < total {
            return UploadEnd::Received { received: at };
        }
        let sha256 = match sha256_of(&file, total) {
            Ok(d) => d,
            Err(e) => {
                return UploadEnd::Failed {
                    message: format!("cannot read the upload back: {e}"),
                };
            }
        };
        if expected.as_deref().is_some_and(|e| !e.eq_ignore_ascii_case(&sha256)) {
            // A damaged upload is not kept to be continued.
            let _ = fs.remove_temporary(&temp);
            return UploadEnd::Failed {
                message: format!(
                    "the upload's SHA-256 is {sha256}, not the one the client sent; nothing was written, upload it again"
                ),
            };
        }
        match fs.commit_temporary(&temp) {
            Ok(()) => UploadEnd::Complete { sha256 },
            Err(e) => UploadEnd::Failed {
                message: e.to_string(),
            },
        }
    })
    .await
    .map_err(|e| format!("finishing the upload failed: {e}"))?;
    write_frame(stream, &end_frame).await?;
    Ok(Some(end_frame))
}

fn sha256_of(file: &std::fs::File, total: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < total {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
