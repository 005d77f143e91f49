//! A small client for the hub's HTTPS API: JSON in and out, errors turned
//! into one line a user can act on.

use ferry_proto::api::{ApiError, OAuthError, TokenResponse};
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use thiserror::Error;

const REQUEST_WITHIN: Duration = Duration::from_secs(60);
const CONNECT_WITHIN: Duration = Duration::from_secs(15);

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
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
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
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .https_only(true)
        .timeout(REQUEST_WITHIN)
        .connect_timeout(CONNECT_WITHIN)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
}

/// The error and its causes as one line (reqwest nests the real reason).
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

impl HubClient {
    pub fn new(base_url: &str, trust: &Trust) -> Result<Self, HubError> {
        let base = base_url.trim_end_matches('/').to_string();
        let http = match trust {
            Trust::Ca(roots) => {
                let tls = crate::tls::client_config(roots, None, &[b"http/1.1"])?;
                builder().use_preconfigured_tls((*tls).clone())
            }
            Trust::System => {
                crate::tls::install_crypto_provider();
                builder()
            }
        }
        .build()
        .map_err(|e| HubError::Unreachable {
            url: base.clone(),
            reason: reason(&e),
        })?;
        Ok(Self { base, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Fetches the hub's CA certificate without verifying the connection.
    /// Only for setup by key, which then checks the certificate against the
    /// fingerprint the key carries before trusting anything.
    pub async fn fetch_ca_unverified(base_url: &str) -> Result<String, HubError> {
        crate::tls::install_crypto_provider();
        let base = base_url.trim_end_matches('/');
        let url = format!("{base}{}", ferry_proto::api::CA_CERT_PATH);
        let http = builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| HubError::Unreachable {
                url: base.to_string(),
                reason: reason(&e),
            })?;
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| HubError::Unreachable {
                url: base.to_string(),
                reason: reason(&e),
            })?;
        if !response.status().is_success() {
            return Err(HubError::Protocol {
                url,
                reason: format!("HTTP {}", response.status()),
            });
        }
        response.text().await.map_err(|e| HubError::Protocol {
            url,
            reason: reason(&e),
        })
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
        let response = request.send().await.map_err(|e| HubError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let status = response.status();
        let url = response.url().to_string();
        let bytes = response.bytes().await.map_err(|e| HubError::Protocol {
            url: url.clone(),
            reason: reason(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| HubError::Protocol {
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

    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        auth: Auth<'_>,
    ) -> Result<R, HubError> {
        self.finish(self.request(reqwest::Method::POST, path, auth).json(body))
            .await
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
