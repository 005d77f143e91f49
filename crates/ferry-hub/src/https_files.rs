//! One file's bytes over HTTPS through the hub:
//! `GET`/`HEAD /api/v1/endpoints/{id}/files/{path}` with the caller's token.
//!
//! The hub decides who may ask (the owner, or a grantee through a
//! permission, exactly as for file operations: [`files::authorize`]), asks
//! the endpoint over its control link to dial back ([`crate::rendezvous`]),
//! and streams what the endpoint sends. The endpoint decides what may be
//! read: it opens the path through its rooted filesystem under its
//! config-paths, narrowed by the grant, and answers the file's size and
//! validators first ([`ferry_proto::file_stream`]); the hub weighs the
//! request's `Range`, `If-Range`, `If-None-Match` and `If-Modified-Since`
//! against them and asks for exactly the bytes it will send.
//!
//! The URL's path after `files/` is the endpoint path with its leading `/`
//! taken off: `files/~/data/x` is `/~/data/x` (the owner's home),
//! `files/scratch/x` is `/scratch/x`.

use crate::audit::{self, Actor};
use crate::control::CallError;
use crate::files::{self, FilesError};
use crate::grants::{Principal, now};
use crate::rendezvous::RelayStream;
use crate::server::Hub;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use ferry_proto::file_stream::{self, StreamHead, StreamSend};
use ferry_proto::frame;
use ferry_proto::share::ShareGrant;
use ferry_proto::wire_path::WirePath;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long an endpoint has to dial back and say what it opened.
const DIAL_WITHIN: Duration = Duration::from_secs(30);
/// Bytes read from the endpoint per body chunk.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("endpoint '{0}' is serving as many files as it may at once; try again shortly")]
    Busy(String),
    /// The endpoint could not serve the path; its words.
    #[error("{message}")]
    Refused { message: String, not_found: bool },
    #[error("endpoint '{name}': {reason}")]
    Broken { name: String, reason: String },
    /// The endpoint took the bytes but would not keep them (a digest
    /// that does not match); its words.
    #[error("{0}")]
    Rejected(String),
    /// The request's headers do not make an upload.
    #[error("{0}")]
    Invalid(String),
}

/// The streams each endpoint (or each link) serves now, bounded by
/// `max_streams_per_endpoint` (or the links' own bound).
#[derive(Debug, Default)]
pub struct Streams {
    per_endpoint: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Streams {
    pub(crate) fn take(&self, endpoint_id: &str, max: usize) -> Option<OwnedSemaphorePermit> {
        let mut map = self.per_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        // Endpoints serving nothing hold no entry.
        map.retain(|_, s| s.available_permits() < max);
        map.entry(endpoint_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(max)))
            .clone()
            .try_acquire_owned()
            .ok()
    }
}

/// The endpoint path a URL's `files/{rest}` names.
pub fn endpoint_path(rest: &str) -> WirePath {
    WirePath::from_bytes(format!("/{rest}").into_bytes())
}

/// Answers `GET` or `HEAD` of one file for `who`.
pub async fn serve(
    hub: &Hub,
    who: &Principal,
    endpoint: &str,
    path: WirePath,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, StreamError> {
    let entry = audit::Entry::new(audit::action::READ, path.as_bytes());
    let (row, grant) = files::authorize(hub, who, endpoint, &[(path.as_bytes(), false)], &entry)?;
    let permission = grant.as_ref().map(|g| g.permission_id.clone());
    let outcome = stream(
        hub,
        &row,
        path.clone(),
        grant,
        method,
        headers,
        |_| Ok(()),
        None,
    )
    .await;
    if let (Some(_), Err(StreamError::Refused { message, .. })) = (&permission, &outcome) {
        files::refuse(hub, who, &row.id, &entry, message);
    }
    let (response, sent) = outcome?;
    if sent.length > 0 {
        let detail = match &permission {
            Some(id) => format!("{}; permission {id}", sent.words()),
            None => sent.words(),
        };
        audit::record_done(
            &*hub.store,
            now(),
            &row.id,
            Actor::of(who),
            &[entry.detail(detail)],
        );
    }
    Ok(response)
}

/// Which bytes of a file an answer carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub offset: u64,
    /// 0 when none (HEAD, 304, 416).
    pub length: u64,
    pub partial: bool,
}

impl Sent {
    /// As the audit log says it: `https`, or `https bytes 10-19`.
    pub fn words(&self) -> String {
        if self.partial {
            format!(
                "https bytes {}-{}",
                self.offset,
                self.offset + self.length.max(1) - 1
            )
        } else {
            "https".to_string()
        }
    }
}

/// Answers `GET` or `HEAD` of the file at `path` of the endpoint `row`,
/// read under `grant` (whoever is allowed it, the caller decided), with
/// the request's range and conditions weighed. `admit` is told how many
/// bytes are about to be asked for and may refuse them; `hold` is kept
/// until the body is sent.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream(
    hub: &Hub,
    row: &crate::store::EndpointRow,
    path: WirePath,
    grant: Option<ShareGrant>,
    method: &Method,
    headers: &HeaderMap,
    admit: impl FnOnce(u64) -> Result<(), StreamError>,
    hold: Option<OwnedSemaphorePermit>,
) -> Result<(Response, Sent), StreamError> {
    let broken = |reason: String| StreamError::Broken {
        name: row.display_name.clone(),
        reason,
    };
    let (permit, mut stream) = dial_back(
        hub,
        row,
        crate::cluster::DialBack::Stream {
            path: path.clone(),
            grant,
        },
    )
    .await?;
    let head = tokio::time::timeout(DIAL_WITHIN, read_head(&mut stream))
        .await
        .map_err(|_| broken("no answer in time".into()))?
        .map_err(broken)?;
    let (size, mtime, etag) = match head {
        StreamHead::File { size, mtime, etag } => (size, mtime, etag),
        StreamHead::Failed { message, not_found } => {
            return Err(StreamError::Refused { message, not_found });
        }
    };
    let plan = plan(method, headers, size, mtime, &etag);
    admit(plan.length)?;
    let send = StreamSend {
        offset: plan.offset,
        length: plan.length,
    };
    let bytes = file_stream::encode(&send).map_err(|e| broken(e.to_string()))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| broken(e.to_string()))?;
    stream.flush().await.map_err(|e| broken(e.to_string()))?;
    let sent = Sent {
        offset: plan.offset,
        length: plan.length,
        partial: plan.status == StatusCode::PARTIAL_CONTENT,
    };
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = http_date(mtime).and_then(|d| HeaderValue::from_str(&d).ok()) {
        h.insert(header::LAST_MODIFIED, v);
    }
    match plan.status {
        StatusCode::NOT_MODIFIED => {}
        StatusCode::RANGE_NOT_SATISFIABLE => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        status => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let length = if *method == Method::HEAD && status == StatusCode::OK {
                size
            } else {
                plan.length
            };
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            if status == StatusCode::PARTIAL_CONTENT {
                let last = plan.offset + plan.range_length.max(1) - 1;
                if let Ok(v) =
                    HeaderValue::from_str(&format!("bytes {}-{last}/{size}", plan.offset))
                {
                    h.insert(header::CONTENT_RANGE, v);
                }
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(plan.range_length));
            }
        }
    }
    let body = if plan.length == 0 {
        Body::empty()
    } else {
        Body::new(FileBody {
            stream,
            left: plan.length,
            _permit: permit,
            _hold: hold,
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = plan.status;
    *response.headers_mut() = h;
    Ok((response, sent))
}

async fn read_head(stream: &mut RelayStream) -> Result<StreamHead, String> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("the endpoint's answer was cut: {e}"))?;
    let len = frame::decode_header(header, file_stream::MAX_FRAME).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("the endpoint's answer was cut: {e}"))?;
    file_stream::decode(&body)
}

/// What to answer: the status, and the bytes to ask the endpoint for.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    status: StatusCode,
    offset: u64,
    /// Bytes to fetch (0 for HEAD, 304, 416).
    length: u64,
    /// The range's length, for a 206's headers (also on HEAD).
    range_length: u64,
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// RFC 9110's evaluation of conditions and a single byte range.
fn plan(method: &Method, headers: &HeaderMap, size: u64, mtime: i64, etag: &str) -> Plan {
    let head = *method == Method::HEAD;
    let not_modified = match header_str(headers, header::IF_NONE_MATCH) {
        Some(tags) => tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag),
        None => header_str(headers, header::IF_MODIFIED_SINCE)
            .and_then(parse_http_date)
            .is_some_and(|since| mtime <= since),
    };
    if not_modified {
        return Plan {
            status: StatusCode::NOT_MODIFIED,
            offset: 0,
            length: 0,
            range_length: 0,
        };
    }
    let whole = Plan {
        status: StatusCode::OK,
        offset: 0,
        length: if head { 0 } else { size },
        range_length: 0,
    };
    let Some(range) = header_str(headers, header::RANGE) else {
        return whole;
    };
    // A range of another version of the file: send the whole of this one.
    if let Some(validator) = header_str(headers, header::IF_RANGE) {
        let same = if validator.starts_with('"') {
            validator == etag
        } else {
            parse_http_date(validator).is_some_and(|d| d == mtime)
        };
        if !same {
            return whole;
        }
    }
    match parse_range(range, size) {
        RangeAsk::Ignore => whole,
        RangeAsk::Unsatisfiable => Plan {
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            offset: 0,
            length: 0,
            range_length: 0,
        },
        RangeAsk::Bytes { first, last } => Plan {
            status: StatusCode::PARTIAL_CONTENT,
            offset: first,
            length: if head { 0 } else { last - first + 1 },
            range_length: last - first + 1,
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Not one byte range this server honours (several, or malformed):
    /// the whole file, as RFC 9110 allows.
    Ignore,
    Unsatisfiable,
    Bytes {
        first: u64,
        last: u64,
    },
}

fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Bytes {
                first: size.saturating_sub(n),
                last: size - 1,
            },
            None => RangeAsk::Ignore,
        },
        (first, last) => {
            let Some(first) = number(first) else {
                return RangeAsk::Ignore;
            };
            let last = if last.is_empty() {
                None
            } else {
                match number(last) {
                    Some(l) if l >= first => Some(l),
                    _ => return RangeAsk::Ignore,
                }
            };
            if first >= size {
                return RangeAsk::Unsatisfiable;
            }
            RangeAsk::Bytes {
                first,
                last: last.map_or(size - 1, |l| l.min(size - 1)),
            }
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    let s = t
        .format(&time::format_description::well_known::Rfc2822)
        .ok()?;
    Some(s.replace("+0000", "GMT"))
}

fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let rfc2822 = s.strip_suffix("GMT")?.to_string() + "+0000";
    time::OffsetDateTime::parse(&rfc2822, &time::format_description::well_known::Rfc2822)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// The response body: exactly `left` bytes of the endpoint's stream; a
/// shorter stream is an error, so the client sees a cut transfer, never a
/// short file. Holds the endpoint's stream slot until dropped.
struct FileBody {
    stream: RelayStream,
    left: u64,
    _permit: OwnedSemaphorePermit,
    _hold: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = CHUNK.min(usize::try_from(self.left).unwrap_or(CHUNK));
        let mut buf = vec![0u8; want];
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.stream).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the endpoint's stream ended early",
                    ))));
                }
                self.left -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// A stream slot of the endpoint and its dial-back connection: `ask`
/// sends the control message naming the rendezvous token; the endpoint
/// then dials in. Downloads and uploads alike come this way.
async fn dial_back(
    hub: &Hub,
    row: &crate::store::EndpointRow,
    what: crate::cluster::DialBack,
) -> Result<(OwnedSemaphorePermit, RelayStream), StreamError> {
    let broken = |reason: String| StreamError::Broken {
        name: row.display_name.clone(),
        reason,
    };
    let Some(permit) = hub
        .file_streams
        .take(&row.id, hub.config.max_streams_per_endpoint)
    else {
        return Err(StreamError::Busy(row.display_name.clone()));
    };
    let (token, arrival) = hub
        .rendezvous
        .expect(&row.id, DIAL_WITHIN)
        .map_err(|e| broken(e.to_string()))?;
    match crate::cluster::dial_back(hub, &row.id, token, what).await {
        Ok(()) => {}
        Err(CallError::Offline) => {
            return Err(FilesError::Offline {
                name: row.display_name.clone(),
                id: row.id.clone(),
            }
            .into());
        }
        Err(e) => return Err(broken(e.to_string())),
    }
    let stream = arrival.wait().await.map_err(|e| broken(e.to_string()))?;
    Ok((permit, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"a-b-c\"";

    fn plan_of(pairs: &[(header::HeaderName, &str)]) -> Plan {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        plan(&Method::GET, &h, 100, 1_700_000_000, ETAG)
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            RangeAsk::Bytes { first: 0, last: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeAsk::Bytes {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeAsk::Bytes {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            RangeAsk::Bytes { first: 0, last: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            RangeAsk::Bytes {
                first: 50,
                last: 99
            }
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=9-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=+1-2", 100), RangeAsk::Ignore);
    }

    #[test]
    fn conditions() {
        let date = http_date(1_700_000_000).unwrap();
        assert_eq!(date, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(parse_http_date(&date), Some(1_700_000_000));
        assert_eq!(
            plan_of(&[(header::IF_NONE_MATCH, ETAG)]).status,
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            plan_of(&[(header::IF_NONE_MATCH, "\"other\"")]).status,
            StatusCode::OK
        );
        assert_eq!(
            plan_of(&[(header::IF_MODIFIED_SINCE, &date)]).status,
            StatusCode::NOT_MODIFIED
        );
        let earlier = http_date(1_600_000_000).unwrap();
        assert_eq!(
            plan_of(&[(header::IF_MODIFIED_SINCE, &earlier)]).status,
            StatusCode::OK
        );
        let ranged = plan_of(&[(header::RANGE, "bytes=10-19"), (header::IF_RANGE, ETAG)]);
        assert_eq!(
            (ranged.status, ranged.offset, ranged.length),
            (StatusCode::PARTIAL_CONTENT, 10, 10)
        );
        // Another version: the whole file.
        let stale = plan_of(&[
            (header::RANGE, "bytes=10-19"),
            (header::IF_RANGE, "\"old\""),
        ]);
        assert_eq!((stale.status, stale.length), (StatusCode::OK, 100));
    }
}

/// The request heads of an upload piece, checked.
#[derive(Debug)]
pub struct UploadPiece {
    pub id: String,
    pub offset: u64,
    pub length: u64,
    pub total: u64,
    pub sha256: Option<String>,
}

/// Reads `Content-Range: bytes N-M/TOTAL` (absent: the whole file, of
/// `Content-Length` bytes) and `Repr-Digest: sha-256=:BASE64:`.
pub fn upload_piece(id: &str, headers: &HeaderMap) -> Result<UploadPiece, String> {
    use base64::Engine;
    if !file_stream::valid_upload_id(id) {
        return Err(format!(
            "upload ids are 8 to {} ASCII letters and digits",
            file_stream::MAX_UPLOAD_ID
        ));
    }
    let length: u64 = header_str(headers, header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse().ok())
        .ok_or("an upload needs Content-Length")?;
    let (offset, total) = match header_str(headers, header::CONTENT_RANGE) {
        None => (0, length),
        Some(v) => {
            let bad = || format!("Content-Range {v:?} is not bytes FIRST-LAST/TOTAL");
            let spec = v.trim().strip_prefix("bytes ").ok_or_else(bad)?;
            let (range, total) = spec.split_once('/').ok_or_else(bad)?;
            let total: u64 = total.trim().parse().map_err(|_| bad())?;
            if range.trim() == "*" {
                (total, total)
            } else {
                let (first, last) = range.split_once('-').ok_or_else(bad)?;
                let first: u64 = first.trim().parse().map_err(|_| bad())?;
                let last: u64 = last.trim().parse().map_err(|_| bad())?;
                if last < first || last >= total || last - first + 1 != length {
                    return Err(format!(
                        "Content-Range {v:?} does not match Content-Length {length}"
                    ));
                }
                (first, total)
            }
        }
    };
    let sha256 = match header_str(headers, header::HeaderName::from_static("repr-digest")) {
        None => None,
        Some(v) => {
            let b64 = v
                .split(',')
                .find_map(|d| d.trim().strip_prefix("sha-256=:"))
                .and_then(|d| d.strip_suffix(':'))
                .ok_or("Repr-Digest must carry sha-256=:BASE64:")?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "Repr-Digest's sha-256 is not base64")?;
            if raw.len() != 32 {
                return Err("Repr-Digest's sha-256 is not 32 bytes".into());
            }
            Some(crate::secrets::hex(&raw))
        }
    };
    Ok(UploadPiece {
        id: id.to_string(),
        offset,
        length,
        total,
        sha256,
    })
}

/// How an upload request ended, for its answer.
#[derive(Debug)]
pub enum UploadOutcome {
    /// So many bytes are there now (HEAD, or a piece that is not the last).
    Received(u64),
    /// The piece did not start where the upload stands.
    Conflict(u64),
    /// The file is complete, checked and in place.
    Complete { size: u64, sha256: String },
}

/// Takes a piece of an upload (or, `body` absent, says how much arrived).
pub async fn upload(
    hub: &Hub,
    who: &Principal,
    endpoint: &str,
    path: WirePath,
    piece: Result<UploadPiece, String>,
    body: Option<Body>,
) -> Result<UploadOutcome, StreamError> {
    let entry = audit::Entry::new(audit::action::WRITE, path.as_bytes());
    let (row, grant) = files::authorize(hub, who, endpoint, &[(path.as_bytes(), true)], &entry)?;
    // Judged after the caller: no one learns more than "not found" of an
    // endpoint they cannot reach, however they spell the request.
    let piece = piece.map_err(StreamError::Invalid)?;
    let permission = grant.as_ref().map(|g| g.permission_id.clone());
    let broken = |reason: String| StreamError::Broken {
        name: row.display_name.clone(),
        reason,
    };
    let ask = file_stream::UploadAsk {
        id: piece.id.clone(),
        offset: body.as_ref().map(|_| piece.offset),
        length: piece.length,
        total: piece.total,
        sha256: piece.sha256.clone(),
    };
    let (_permit, mut stream) = dial_back(
        hub,
        &row,
        crate::cluster::DialBack::Upload {
            path: path.clone(),
            grant,
            upload: ask,
        },
    )
    .await?;
    let head: file_stream::UploadHead = tokio::time::timeout(DIAL_WITHIN, read_frame(&mut stream))
        .await
        .map_err(|_| broken("no answer in time".into()))?
        .map_err(&broken)?;
    let received = match head {
        file_stream::UploadHead::Ready { received } => received,
        file_stream::UploadHead::Failed { message, not_found } => {
            if permission.is_some() {
                files::refuse(hub, who, &row.id, &entry, &message);
            }
            return Err(StreamError::Refused { message, not_found });
        }
    };
    let Some(mut body) = body else {
        return Ok(UploadOutcome::Received(received));
    };
    if received != piece.offset {
        return Ok(UploadOutcome::Conflict(received));
    }
    // The body, forwarded as it arrives; the endpoint counts the bytes.
    let mut sent = 0u64;
    while let Some(frame) =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await
    {
        let frame = frame.map_err(|e| broken(format!("the client's upload was cut: {e}")))?;
        if let Ok(data) = frame.into_data() {
            sent += data.len() as u64;
            if sent > piece.length {
                return Err(broken("the body is longer than its Content-Length".into()));
            }
            stream
                .write_all(&data)
                .await
                .map_err(|e| broken(e.to_string()))?;
        }
    }
    if sent < piece.length {
        // Dropping the stream tells the endpoint: it keeps what arrived.
        return Err(broken(format!(
            "the client's upload ended after {sent} of {} bytes",
            piece.length
        )));
    }
    stream.flush().await.map_err(|e| broken(e.to_string()))?;
    let end: file_stream::UploadEnd = tokio::time::timeout(DIAL_WITHIN, read_frame(&mut stream))
        .await
        .map_err(|_| broken("no answer in time".into()))?
        .map_err(&broken)?;
    match end {
        file_stream::UploadEnd::Received { received } => Ok(UploadOutcome::Received(received)),
        file_stream::UploadEnd::Complete { sha256 } => {
            let detail = match &permission {
                Some(id) => format!("https upload, {} bytes; permission {id}", piece.total),
                None => format!("https upload, {} bytes", piece.total),
            };
            audit::record_done(
                &*hub.store,
                now(),
                &row.id,
                Actor::of(who),
                &[entry.detail(detail)],
            );
            Ok(UploadOutcome::Complete {
                size: piece.total,
                sha256,
            })
        }
        file_stream::UploadEnd::Failed { message } => Err(StreamError::Rejected(message)),
    }
}

async fn read_frame<T: for<'de> serde::Deserialize<'de>>(
    stream: &mut RelayStream,
) -> Result<T, String> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("the endpoint's answer was cut: {e}"))?;
    let len = frame::decode_header(header, file_stream::MAX_FRAME).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("the endpoint's answer was cut: {e}"))?;
    file_stream::decode(&body)
}
