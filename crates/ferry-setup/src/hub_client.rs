//! A small client for the hub's HTTPS API: JSON in and out, errors turned
//! into one line a user can act on.
//!
//! [`HubClient::connect`] checks a hub before anything is asked of the
//! user: the URL's form, the name, the port, TLS with the trust that will
//! be used, and that a ferry hub answers. [`HubClient::new`] only checks the
//! URL's form, for the commands whose first request says enough.

use ferry_proto::api::{ApiError, CA_CERT_PATH, OAuthError, TokenResponse};
use ferry_proto::setup_key::{cert_sha256, format_fingerprint};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

const REQUEST_WITHIN: Duration = Duration::from_secs(60);
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
/// The whole check of a hub: connect, handshake, `GET /ca.crt`.
const CHECK_WITHIN: Duration = Duration::from_secs(10);
/// Name resolution; the system's resolver has its own, shorter, limits.
const LOOKUP_WITHIN: Duration = Duration::from_secs(30);
/// More than any CA chain a hub serves.
const CA_MAX_BYTES: usize = 256 * 1024;
/// Most pages one list is read in (a hub's pages hold up to 1000 items).
const MAX_PAGES: usize = 10_000;

/// A hub URL that cannot work, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("the hub URL {url:?} has no scheme: write it as {suggested}")]
    NoScheme { url: String, suggested: String },
    #[error("the hub speaks only https: use {suggested}, not {url}")]
    Http { url: String, suggested: String },
    #[error("the hub URL {url:?} is not https: the hub speaks only https (https://HOST:PORT)")]
    NotHttps { url: String },
    #[error("{url:?} is not a usable hub URL ({reason}): write it as https://HOST:PORT")]
    Malformed { url: String, reason: String },
}

/// Why a hub could not be used, found by [`HubClient::connect`] before any
/// login URL is shown.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    #[error(
        "cannot find the hub: the name {host:?} does not resolve ({reason}); check the hub URL"
    )]
    NotFound { host: String, reason: String },
    #[error("connection refused at {authority}: is the hub running, and is this its port?")]
    Refused { authority: String },
    #[error(
        "no answer from {authority} within {secs}s: is the hub up, is this its port, and may this machine reach it (firewall)?"
    )]
    TimedOut { authority: String, secs: u64 },
    #[error(
        "{authority} answered, but not with TLS: is this the hub's port? (the hub speaks only https)"
    )]
    NotTls { authority: String },
    #[error(
        "the hub's certificate is not valid for {host:?}: use the host name the hub was set up with (its `ferry-hub init --url`)"
    )]
    WrongName { host: String },
    /// The hub's certificate does not chain to the CA trusted here.
    /// `presented` is the SHA-256 fingerprint of the CA the hub serves,
    /// fetched without trusting it, only to show.
    #[error("{}", untrusted_line(.url, .presented, *.ca_given))]
    Untrusted {
        url: String,
        presented: Result<String, String>,
        ca_given: bool,
    },
    #[error("the hub's certificate at {url} is not accepted: {reason}")]
    Certificate { url: String, reason: String },
    #[error(
        "{url} answered {answer} for {CA_CERT_PATH}: it does not look like a ferry hub; check the hub URL"
    )]
    NotAHub { url: String, answer: String },
}

fn untrusted_line(url: &str, presented: &Result<String, String>, ca_given: bool) -> String {
    let what = if ca_given {
        format!(
            "the hub at {url} presents a certificate that the CA given with --hub-ca (or FERRY_HUB_CA) did not issue; stopped here."
        )
    } else {
        format!(
            "the hub at {url} uses its own CA, which this machine does not trust; stopped here."
        )
    };
    match presented {
        Ok(fingerprint) => format!(
            "{what} The CA it presents has SHA-256 fingerprint {fingerprint}. Get that CA's certificate file (from your hub's admin; `ferry-hub init` printed where it is; the hub's start page links it as {url}{CA_CERT_PATH}), check that its fingerprint is the one the admin published, and pass it: --hub-ca FILE (or FERRY_HUB_CA=FILE)"
        ),
        Err(reason) => format!(
            "{what} Its CA could not be fetched to show ({reason}). Get the hub's CA certificate file from its admin (`ferry-hub init` printed where it is) and pass it: --hub-ca FILE (or FERRY_HUB_CA=FILE)"
        ),
    }
}

#[derive(Debug, Error)]
pub enum HubError {
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The API said no; `message` is the hub's own line.
    #[error("{message}")]
    Api {
        status: u16,
        error: String,
        message: String,
    },
    #[error("the hub refused: {description} ({error})")]
    OAuth { error: String, description: String },
    #[error("unexpected answer from the hub at {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{0}")]
    Tls(#[from] ferry_tls::TlsError),
}

impl HubError {
    /// The URL was mistyped: a usage error, not a failure of the hub.
    pub fn is_usage(&self) -> bool {
        matches!(self, HubError::Url(_))
    }

    /// The hub's URL may be the wrong one: mistyped, or nothing (or not a
    /// hub) answers there.
    pub fn is_about_address(&self) -> bool {
        matches!(
            self,
            HubError::Url(_)
                | HubError::Check(
                    CheckError::NotFound { .. }
                        | CheckError::Refused { .. }
                        | CheckError::TimedOut { .. }
                        | CheckError::NotTls { .. }
                        | CheckError::WrongName { .. }
                        | CheckError::NotAHub { .. }
                )
        )
    }
}

/// A hub URL of a form that can work: https, a host, nothing after the
/// path. Kept as written, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    base: String,
    /// The name to resolve; `None` for an IP address.
    domain: Option<String>,
    /// `HOST:PORT`, as messages show it.
    authority: String,
    host: String,
    port: u16,
}

impl HubUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let malformed = |reason: &str| UrlError::Malformed {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(malformed("empty"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            let lower = text.to_ascii_lowercase();
            if lower.starts_with("https:") || lower.starts_with("http:") {
                return Err(malformed("the scheme needs `://`"));
            }
            return Err(UrlError::NoScheme {
                url: text.to_string(),
                suggested: format!("https://{}", text.trim_start_matches('/')),
            });
        };
        if scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::Http {
                url: text.to_string(),
                suggested: format!("https://{rest}"),
            });
        }
        if !scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::NotHttps {
                url: text.to_string(),
            });
        }
        let parsed = reqwest::Url::parse(text).map_err(|e| malformed(&e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| malformed("no host"))?
            .to_string();
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(malformed("a hub URL has no ?query or #fragment"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(malformed("a hub URL carries no user name or password"));
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        Ok(Self {
            base: text.trim_end_matches('/').to_string(),
            domain: parsed.domain().map(str::to_string),
            authority: format!("{host}:{port}"),
            host,
            port,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// `HOST:PORT`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The addresses of the hub's name (none to look up for an IP address).
    async fn resolve(&self) -> Result<Vec<SocketAddr>, CheckError> {
        let Some(domain) = &self.domain else {
            return Ok(Vec::new());
        };
        let not_found = |reason: String| CheckError::NotFound {
            host: self.host.clone(),
            reason,
        };
        let found = tokio::time::timeout(
            LOOKUP_WITHIN,
            tokio::net::lookup_host((domain.as_str(), self.port)),
        )
        .await
        .map_err(|_| {
            not_found(format!(
                "no answer from the resolver within {}s",
                LOOKUP_WITHIN.as_secs()
            ))
        })?
        .map_err(|e| not_found(e.to_string()))?;
        let addrs: Vec<SocketAddr> = found.collect();
        if addrs.is_empty() {
            return Err(not_found("no address".into()));
        }
        Ok(addrs)
    }
}

/// Whom to trust as the hub.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly these CA certificates (a self-hosted hub's own CA).
    Ca(Vec<CertificateDer<'static>>),
    /// The system's trust store (a hub with a publicly trusted certificate).
    System,
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    SetupKey(&'a str),
}

#[derive(Debug, Clone)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
    /// The CA certificates (PEM) the hub served to [`HubClient::connect`].
    served_ca: String,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .https_only(true)
        .timeout(REQUEST_WITHIN)
        .connect_timeout(CONNECT_WITHIN)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
}

/// A builder trusting `trust`, reaching `url` at `addrs` when given.
fn trusting(
    trust: &Trust,
    url: &HubUrl,
    addrs: &[SocketAddr],
) -> Result<reqwest::ClientBuilder, HubError> {
    let builder = match trust {
        Trust::Ca(roots) => {
            let tls = ferry_tls::client_config(roots, None, &[b"http/1.1"])?;
            builder().use_preconfigured_tls((*tls).clone())
        }
        Trust::System => {
            ferry_tls::install_crypto_provider();
            builder()
        }
    };
    Ok(pinned(builder, url, addrs))
}

fn pinned(
    builder: reqwest::ClientBuilder,
    url: &HubUrl,
    addrs: &[SocketAddr],
) -> reqwest::ClientBuilder {
    match &url.domain {
        Some(domain) if !addrs.is_empty() => builder.resolve_to_addrs(domain, addrs),
        _ => builder,
    }
}

/// The error and its causes as one line (reqwest nests the real reason).
/// The path and query of a `Link` header's `rel="next"` target, if it
/// has one: `<https://hub/api/v1/tasks?marker=..>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .strip_prefix("rel=")
                .is_some_and(|r| r.trim_matches('"').split(' ').any(|r| r == "next"))
        });
        if !is_next {
            return None;
        }
        let url = reqwest::Url::parse(target)
            .or_else(|_| reqwest::Url::parse("https://hub.invalid")?.join(target))
            .ok()?;
        Some(match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        })
    })
}

fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    if line.contains("certificate") || line.contains("UnknownIssuer") {
        line.push_str(" (the hub's certificate is not trusted: pass the hub's CA with --hub-ca FILE or FERRY_HUB_CA)");
    }
    line
}

/// What went wrong with a request, read off the error's causes by type.
#[derive(Debug)]
enum Failure {
    Refused,
    TimedOut,
    Tls(rustls::Error),
    Other(String),
}

fn failure(e: &reqwest::Error) -> Failure {
    let mut timed_out = e.is_timeout();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Error chains are short; the bound only keeps a cyclic one finite.
    for _ in 0..32 {
        let Some(current) = cause else { break };
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Failure::Tls(tls.clone());
        }
        let io = current.downcast_ref::<std::io::Error>();
        match io.map(std::io::Error::kind) {
            Some(std::io::ErrorKind::ConnectionRefused) => return Failure::Refused,
            Some(std::io::ErrorKind::TimedOut) => timed_out = true,
            _ => {}
        }
        // An io::Error's source() skips the error it wraps (and io errors
        // nest: the TLS error sits two deep); step into it instead.
        cause = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    if timed_out {
        Failure::TimedOut
    } else {
        Failure::Other(reason(e))
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, HubError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HubError::Protocol {
        url: url.to_string(),
        reason: reason(&e),
    })? {
        if body.len() + chunk.len() > limit {
            return Err(HubError::Protocol {
                url: url.to_string(),
                reason: format!("answer larger than {} KiB", limit / 1024),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `GET /ca.crt` without verifying the connection: the PEM text.
async fn fetch_ca_insecurely(url: &HubUrl, addrs: &[SocketAddr]) -> Result<String, HubError> {
    ferry_tls::install_crypto_provider();
    let ca_url = format!("{}{CA_CERT_PATH}", url.as_str());
    let http = pinned(builder().tls_danger_accept_invalid_certs(true), url, addrs)
        .build()
        .map_err(|e| HubError::Unreachable {
            url: url.as_str().to_string(),
            reason: reason(&e),
        })?;
    let response = http
        .get(&ca_url)
        .timeout(CHECK_WITHIN)
        .send()
        .await
        .map_err(|e| explain(&e, url, None))?;
    if !response.status().is_success() {
        return Err(CheckError::NotAHub {
            url: url.as_str().to_string(),
            answer: format!("HTTP {}", response.status()),
        }
        .into());
    }
    let body = read_capped(response, CA_MAX_BYTES, &ca_url).await?;
    String::from_utf8(body).map_err(|_| {
        CheckError::NotAHub {
            url: url.as_str().to_string(),
            answer: "something other than text".into(),
        }
        .into()
    })
}

/// The SHA-256 fingerprint of the first certificate in `pem`.
fn fingerprint(pem: &str) -> Result<String, HubError> {
    let certs = ferry_tls::certs_from_pem(pem, "the hub's CA answer")?;
    let first = certs.first().ok_or_else(|| HubError::Protocol {
        url: String::new(),
        reason: "no certificate".into(),
    })?;
    Ok(format_fingerprint(&cert_sha256(first)))
}

/// A failed request to the hub at `url`, in words. `trust` is what the
/// request trusted (`None`: nothing was verified).
fn explain(e: &reqwest::Error, url: &HubUrl, trust: Option<&Trust>) -> HubError {
    match failure(e) {
        Failure::Refused => CheckError::Refused {
            authority: url.authority().to_string(),
        }
        .into(),
        Failure::TimedOut => CheckError::TimedOut {
            authority: url.authority().to_string(),
            secs: CHECK_WITHIN.as_secs(),
        }
        .into(),
        Failure::Tls(tls) => tls_refusal(&tls, url, trust).into(),
        Failure::Other(reason) => HubError::Unreachable {
            url: url.as_str().to_string(),
            reason,
        },
    }
}

fn tls_refusal(tls: &rustls::Error, url: &HubUrl, trust: Option<&Trust>) -> CheckError {
    use rustls::{CertificateError, Error};
    match tls {
        // A CA of the same name that did not sign it: BadSignature.
        Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => CheckError::Untrusted {
            url: url.as_str().to_string(),
            presented: Err("not fetched".into()),
            ca_given: matches!(trust, Some(Trust::Ca(_))),
        },
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => CheckError::WrongName {
            host: url.host.clone(),
        },
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => CheckError::NotTls {
            authority: url.authority().to_string(),
        },
        other => CheckError::Certificate {
            url: url.as_str().to_string(),
            reason: other.to_string(),
        },
    }
}

/// A file's answer, read by the caller as it arrives.
pub type FileResponse = reqwest::Response;

impl HubClient {
    /// A client for the hub at `base_url`, which must be an https URL.
    /// Nothing is sent.
    pub fn new(base_url: &str, trust: &Trust) -> Result<Self, HubError> {
        let url = HubUrl::parse(base_url)?;
        Self::build(&url, trust, &[])
    }

    fn build(url: &HubUrl, trust: &Trust, addrs: &[SocketAddr]) -> Result<Self, HubError> {
        let http = trusting(trust, url, addrs)?
            .build()
            .map_err(|e| HubError::Unreachable {
                url: url.as_str().to_string(),
                reason: reason(&e),
            })?;
        Ok(Self {
            base: url.as_str().to_string(),
            http,
            served_ca: String::new(),
        })
    }

    /// A client for a hub that was checked to answer as one: the URL's
    /// form, its name, that something listens on its port, that it speaks
    /// TLS with a certificate `trust` accepts, and that it serves its CA
    /// (one request, `GET /ca.crt`). On an unknown issuer, the CA the hub
    /// presents is fetched without trusting it, only to show its
    /// fingerprint in the error; nothing else is sent to such a hub.
    pub async fn connect(base_url: &str, trust: &Trust) -> Result<Self, HubError> {
        let url = HubUrl::parse(base_url)?;
        let addrs = url.resolve().await?;
        let client = Self::build(&url, trust, &addrs)?;
        let ca_url = format!("{}{CA_CERT_PATH}", url.as_str());
        let response = match client.http.get(&ca_url).timeout(CHECK_WITHIN).send().await {
            Ok(response) => response,
            Err(e) => {
                let mut refusal = explain(&e, &url, Some(trust));
                if let HubError::Check(CheckError::Untrusted { presented, .. }) = &mut refusal {
                    *presented = match fetch_ca_insecurely(&url, &addrs).await {
                        Ok(pem) => fingerprint(&pem),
                        Err(e) => Err(e),
                    }
                    .map_err(|e| e.to_string());
                }
                return Err(refusal);
            }
        };
        if !response.status().is_success() {
            return Err(CheckError::NotAHub {
                url: url.as_str().to_string(),
                answer: format!("HTTP {}", response.status()),
            }
            .into());
        }
        let body = read_capped(response, CA_MAX_BYTES, &ca_url).await?;
        let served_ca = String::from_utf8(body)
            .ok()
            .filter(|pem| ferry_tls::certs_from_pem(pem, "").is_ok())
            .ok_or_else(|| CheckError::NotAHub {
                url: url.as_str().to_string(),
                answer: "no certificate".into(),
            })?;
        Ok(Self {
            served_ca,
            ..client
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The CA certificates (PEM) the hub served, fetched over the verified
    /// connection by [`HubClient::connect`]; empty from [`HubClient::new`].
    pub fn served_ca(&self) -> &str {
        &self.served_ca
    }

    /// Fetches the hub's CA certificate without verifying the connection.
    /// Only for setup by key, which then checks the certificate against the
    /// fingerprint the key carries before trusting anything, and for an
    /// endpoint of a publicly trusted hub after its login.
    pub async fn fetch_ca_unverified(base_url: &str) -> Result<String, HubError> {
        let url = HubUrl::parse(base_url)?;
        let addrs = url.resolve().await?;
        fetch_ca_insecurely(&url, &addrs).await
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::SetupKey(key) => {
                request.header(reqwest::header::AUTHORIZATION, format!("SetupKey {key}"))
            }
        }
    }

    async fn finish<R: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<R, HubError> {
        Ok(self.finish_page(request).await?.0)
    }

    /// The answer, and the path and query of the next page when its
    /// `Link` header names one (`<URL>; rel="next"`, RFC 8288). Only the
    /// path and query are kept: the next page is asked of this hub, with
    /// this token, wherever the link points.
    async fn finish_page<R: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(R, Option<String>), HubError> {
        let response = request.send().await.map_err(|e| HubError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let status = response.status();
        let url = response.url().to_string();
        let next = response
            .headers()
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        let bytes = response.bytes().await.map_err(|e| HubError::Protocol {
            url: url.clone(),
            reason: reason(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(|answer| (answer, next))
                .map_err(|e| HubError::Protocol {
                    url,
                    reason: e.to_string(),
                });
        }
        if let Ok(api) = serde_json::from_slice::<ApiError>(&bytes) {
            return Err(HubError::Api {
                status: status.as_u16(),
                error: api.error,
                message: api.message,
            });
        }
        if let Ok(oauth) = serde_json::from_slice::<OAuthError>(&bytes) {
            return Err(HubError::OAuth {
                error: oauth.error,
                description: oauth.error_description,
            });
        }
        Err(HubError::Protocol {
            url,
            reason: format!("HTTP {status}"),
        })
    }

    pub async fn get_json<R: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth<'_>,
    ) -> Result<R, HubError> {
        self.finish(self.request(reqwest::Method::GET, path, auth).query(query))
            .await
    }

    /// A whole list: its first page, then each `next` page the hub's
    /// `Link` header names, until none (at most [`MAX_PAGES`]).
    pub async fn get_all<R: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth<'_>,
    ) -> Result<Vec<R>, HubError> {
        let (mut all, mut next): (Vec<R>, _) = self
            .finish_page(self.request(reqwest::Method::GET, path, auth).query(query))
            .await?;
        let mut pages = 1;
        while let Some(path) = next {
            if pages >= MAX_PAGES {
                return Err(HubError::Protocol {
                    url: format!("{}{path}", self.base),
                    reason: format!("the list goes on past {MAX_PAGES} pages"),
                });
            }
            let (page, then): (Vec<R>, _) = self
                .finish_page(self.request(reqwest::Method::GET, &path, auth))
                .await?;
            all.extend(page);
            next = then;
            pages += 1;
        }
        Ok(all)
    }

    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        auth: Auth<'_>,
    ) -> Result<R, HubError> {
        self.finish(self.request(reqwest::Method::POST, path, auth).json(body))
            .await
    }

    pub async fn patch_json<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        auth: Auth<'_>,
    ) -> Result<R, HubError> {
        self.finish(self.request(reqwest::Method::PATCH, path, auth).json(body))
            .await
    }

    pub async fn delete_json<R: DeserializeOwned>(
        &self,
        path: &str,
        auth: Auth<'_>,
    ) -> Result<R, HubError> {
        self.finish(self.request(reqwest::Method::DELETE, path, auth))
            .await
    }

    /// `GET` of a file (`/api/v1/endpoints/{id}/files/...`) whose body the
    /// caller reads itself, as it arrives: the response once its status
    /// is a success or a 304/416; any other answer is the hub's error.
    pub async fn get_file(
        &self,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, HubError> {
        self.file_request(reqwest::Method::GET, path, auth, headers, None)
            .await
    }

    /// `HEAD` of a file or an upload (`?upload=ID`), as [`Self::get_file`].
    pub async fn head_file(
        &self,
        path: &str,
        auth: Auth<'_>,
    ) -> Result<reqwest::Response, HubError> {
        self.file_request(reqwest::Method::HEAD, path, auth, &[], None)
            .await
    }

    /// `PUT` of an upload's piece, as [`Self::get_file`] (a 409 comes back
    /// as an answer too: it says where the upload stands).
    pub async fn put_file(
        &self,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, HubError> {
        self.file_request(reqwest::Method::PUT, path, auth, headers, Some(body))
            .await
    }

    async fn file_request(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, HubError> {
        let mut request = self.request(method, path, auth);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| HubError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let status = response.status().as_u16();
        if response.status().is_success() || matches!(status, 304 | 409 | 416) {
            return Ok(response);
        }
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| HubError::Protocol {
            url: url.clone(),
            reason: reason(&e),
        })?;
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(api) => Err(HubError::Api {
                status,
                error: api.error,
                message: api.message,
            }),
            Err(_) => Err(HubError::Protocol {
                url,
                reason: format!("HTTP {status}"),
            }),
        }
    }

    /// `POST /token` with a form (RFC 6749 §4.1.3, §6).
    pub async fn token(&self, form: &[(&str, &str)]) -> Result<TokenResponse, HubError> {
        self.finish(
            self.request(reqwest::Method::POST, "/token", Auth::None)
                .form(form),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_read_as_a_path_on_this_hub() {
        assert_eq!(
            next_link(
                r#"<https://hub.example.org:8443/api/v1/tasks?limit=2&marker=bzI>; rel="next""#
            )
            .as_deref(),
            Some("/api/v1/tasks?limit=2&marker=bzI")
        );
        assert_eq!(
            next_link(r#"</x?a=1>; rel="prev", </api/v1/groups?marker=bzE>; rel=next"#).as_deref(),
            Some("/api/v1/groups?marker=bzE")
        );
        assert_eq!(next_link(r#"<https://h/api/v1/tasks>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn hub_urls_are_https_with_a_host() {
        let url = HubUrl::parse(" https://hub.example.org:8443/ ").unwrap();
        assert_eq!(url.as_str(), "https://hub.example.org:8443");
        assert_eq!(url.authority(), "hub.example.org:8443");
        assert_eq!(url.domain.as_deref(), Some("hub.example.org"));
        let url = HubUrl::parse("https://127.0.0.1").unwrap();
        assert_eq!(
            (url.authority(), url.domain.as_deref()),
            ("127.0.0.1:443", None)
        );
        assert_eq!(
            HubUrl::parse("https://[::1]:8443").unwrap().authority(),
            "[::1]:8443"
        );
        assert_eq!(
            HubUrl::parse("https://proxy.example.org/ferry")
                .unwrap()
                .as_str(),
            "https://proxy.example.org/ferry"
        );
    }

    #[test]
    fn a_url_that_cannot_work_says_what_to_write() {
        assert_eq!(
            HubUrl::parse("hub.example.org:8443"),
            Err(UrlError::NoScheme {
                url: "hub.example.org:8443".into(),
                suggested: "https://hub.example.org:8443".into(),
            })
        );
        let http = HubUrl::parse("HTTP://127.0.0.1:8443").unwrap_err();
        assert_eq!(
            http.to_string(),
            "the hub speaks only https: use https://127.0.0.1:8443, not HTTP://127.0.0.1:8443"
        );
        assert!(matches!(
            HubUrl::parse("ftp://hub"),
            Err(UrlError::NotHttps { .. })
        ));
        for bad in [
            "",
            "https:hub",
            "https://",
            "https://hub:99999",
            "https://hub/?x=1",
            "https://hub/#top",
            "https://user:pw@hub",
        ] {
            assert!(
                matches!(HubUrl::parse(bad), Err(UrlError::Malformed { .. })),
                "{bad:?}: {:?}",
                HubUrl::parse(bad)
            );
        }
    }

    #[test]
    fn an_untrusted_hub_shows_the_fingerprint_and_the_flag() {
        let line = CheckError::Untrusted {
            url: "https://hub:8443".into(),
            presented: Ok("AB:CD".into()),
            ca_given: false,
        }
        .to_string();
        assert!(line.contains("uses its own CA"), "{line}");
        assert!(line.contains("fingerprint AB:CD"), "{line}");
        assert!(line.contains("https://hub:8443/ca.crt"), "{line}");
        assert!(line.contains("--hub-ca FILE"), "{line}");
        let line = CheckError::Untrusted {
            url: "https://hub:8443".into(),
            presented: Err("timed out".into()),
            ca_given: true,
        }
        .to_string();
        assert!(line.contains("did not issue"), "{line}");
        assert!(
            line.contains("could not be fetched to show (timed out)"),
            "{line}"
        );
    }

    #[test]
    fn new_refuses_a_url_that_cannot_work_before_sending() {
        assert!(matches!(
            HubClient::new("http://hub:1", &Trust::System),
            Err(HubError::Url(UrlError::Http { .. }))
        ));
    }
}
