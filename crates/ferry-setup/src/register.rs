//! `ferry -setup`: register this machine as an endpoint, by setup key (no
//! questions) or by logging in (the paste-the-code dialogue), then write
//! the credential files.
//!
//! Nothing is written until the hub has signed the certificate, and
//! `endpoint.toml`, which marks the dir as set up, is written last.

use crate::hub_client::{Auth, HubClient, HubError, Trust};
use crate::login::{Credentials, LoginError, Prompt, interactive_login};
use ferry_endpoint::{EndpointDir, EndpointIdentity, SetupError, write_atomic};
use ferry_proto::api::{RegisterEndpoint, RegisteredEndpoint};
use ferry_proto::setup_key::{SetupKey, cert_sha256, format_fingerprint};
use ferry_tls::certs_from_pem;
use std::path::{Path, PathBuf};

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct SetupRequest {
    pub key: Option<String>,
    pub hub: Option<String>,
    pub hub_ca: Option<PathBuf>,
    pub name: Option<String>,
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(
        "{dir} is already set up as endpoint {name:?} ({id}); use --force to register anew, or -dir for another endpoint"
    )]
    AlreadySetUp {
        dir: String,
        name: String,
        id: String,
    },
    #[error(
        "no hub given: pass --hub https://HOST:PORT, or set FERRY_HUB=https://HOST:PORT (a site's `module load ferry` may set it), or give a setup key, which names its hub"
    )]
    NoHub,
    #[error(
        "the hub at {hub} presents CA {got}, but the setup key expects {expected}; refusing to trust it (wrong hub, or someone in between)"
    )]
    FingerprintMismatch {
        hub: String,
        expected: String,
        got: String,
    },
    #[error("cannot read the hub's CA certificate {path}: {reason}")]
    ReadCa { path: String, reason: String },
    #[error("cannot make the endpoint key: {0}")]
    Key(String),
    #[error("no endpoint name entered")]
    NoName,
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Files(#[from] SetupError),
}

impl RegisterError {
    /// No hub, or a mistyped hub URL: a usage error.
    pub fn is_usage(&self) -> bool {
        matches!(self, RegisterError::NoHub) || self.hub_error().is_some_and(HubError::is_usage)
    }

    pub fn hub_error(&self) -> Option<&HubError> {
        match self {
            RegisterError::Hub(e) => Some(e),
            RegisterError::Login(e) => e.hub_error(),
            _ => None,
        }
    }
}

/// What setup made.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: String,
    pub name: String,
    pub hub_url: String,
    pub wrote_config_paths: bool,
    /// The node of an existing endpoint this machine joined as (a node's
    /// setup key); `None`: it is the endpoint.
    pub node: Option<String>,
}

fn read_ca(path: &Path) -> Result<String, RegisterError> {
    std::fs::read_to_string(path).map_err(|e| RegisterError::ReadCa {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The CA a setup key vouches for: the one given (checked), else the one
/// the hub serves (checked against the key's fingerprint before use).
async fn ca_for_key(
    key: &SetupKey,
    hub_url: &str,
    given: Option<&Path>,
) -> Result<String, RegisterError> {
    let pem = match given {
        Some(path) => read_ca(path)?,
        None => HubClient::fetch_ca_unverified(hub_url).await?,
    };
    let first = certs_from_pem(&pem, "the hub's CA").map_err(HubError::from)?;
    let got = cert_sha256(&first[0]);
    if got != key.ca_sha256 {
        return Err(RegisterError::FingerprintMismatch {
            hub: hub_url.to_string(),
            expected: format_fingerprint(&key.ca_sha256),
            got: format_fingerprint(&got),
        });
    }
    Ok(pem)
}

/// Runs setup. `credentials_path` receives the login of an interactive
/// setup, so user commands work right after.
pub async fn setup(
    dir: &EndpointDir,
    request: SetupRequest,
    prompt: &mut dyn Prompt,
    credentials_path: &Path,
) -> Result<Registered, RegisterError> {
    if dir.looks_set_up() && !request.force {
        let (name, id) = dir
            .load_identity()
            .map(|i| (i.name, i.id))
            .unwrap_or_else(|_| ("?".into(), "unknown id".into()));
        return Err(RegisterError::AlreadySetUp {
            dir: dir.root().display().to_string(),
            name,
            id,
        });
    }

    let (registered, key_pem, hub_url, ca_pem) = match &request.key {
        Some(text) => {
            let key = SetupKey::decode(text).map_err(|e| HubError::Api {
                status: 0,
                error: "invalid_setup_key".into(),
                message: e.to_string(),
            })?;
            let hub_url = request.hub.clone().unwrap_or_else(|| key.hub_url.clone());
            let ca_pem = ca_for_key(&key, &hub_url, request.hub_ca.as_deref()).await?;
            let client = HubClient::connect(
                &hub_url,
                &Trust::Ca(certs_from_pem(&ca_pem, "the hub's CA").map_err(HubError::from)?),
            )
            .await?;
            let hub_url = client.base_url().to_string();
            let name = request.name.clone().unwrap_or_else(|| "endpoint".into());
            let (key_pem, csr_pem) = ferry_tls::csr::key_and_csr(&name)
                .map_err(|e| RegisterError::Key(e.to_string()))?;
            let registered: RegisteredEndpoint = client
                .post_json(
                    "/api/v1/endpoints/register",
                    &RegisterEndpoint {
                        csr_pem,
                        display_name: None,
                    },
                    Auth::SetupKey(text.trim()),
                )
                .await?;
            (registered, key_pem, hub_url, ca_pem)
        }
        None => {
            let hub_url = request.hub.clone().ok_or(RegisterError::NoHub)?;
            let (trust, ca_pem) = match &request.hub_ca {
                Some(path) => {
                    let pem = read_ca(path)?;
                    (
                        Trust::Ca(
                            certs_from_pem(&pem, &path.display().to_string())
                                .map_err(HubError::from)?,
                        ),
                        Some(pem),
                    )
                }
                None => (Trust::System, None),
            };
            let (client, token) = interactive_login(&hub_url, &trust, prompt).await?;
            let hub_url = client.base_url().to_string();
            let name = match &request.name {
                Some(name) => name.clone(),
                None => prompt
                    .ask("Input a value for the Endpoint Name: ")
                    .map_err(LoginError::Input)?
                    .trim()
                    .to_string(),
            };
            if name.is_empty() {
                return Err(RegisterError::NoName);
            }
            let (key_pem, csr_pem) = ferry_tls::csr::key_and_csr(&name)
                .map_err(|e| RegisterError::Key(e.to_string()))?;
            let registered: RegisteredEndpoint = client
                .post_json(
                    "/api/v1/endpoints/register",
                    &RegisterEndpoint {
                        csr_pem,
                        display_name: Some(name),
                    },
                    Auth::Bearer(&token.access_token),
                )
                .await?;
            Credentials::from_token(&hub_url, ca_pem.clone(), token).save(credentials_path)?;
            // The endpoint must trust the hub's CA for its control channel;
            // with a publicly trusted hub, the hub serves its CA chain, as
            // the check fetched it over the verified connection.
            let ca_pem = match ca_pem {
                Some(pem) => pem,
                None => client.served_ca().to_string(),
            };
            (registered, key_pem, hub_url, ca_pem)
        }
    };
    write_files(dir, &registered, &key_pem, &ca_pem, &hub_url)
}

fn write_files(
    dir: &EndpointDir,
    registered: &RegisteredEndpoint,
    key_pem: &str,
    ca_pem: &str,
    hub_url: &str,
) -> Result<Registered, RegisterError> {
    dir.ensure_private()?;
    let write = |path: PathBuf, text: &str, mode: u32| {
        write_atomic(&path, text.as_bytes(), mode).map_err(SetupError::io("write", &path))
    };
    write(dir.key_file(), key_pem, 0o600)?;
    write(dir.cert_file(), &registered.cert_pem, 0o644)?;
    write(dir.hub_ca_file(), ca_pem, 0o644)?;
    write(dir.endpoint_ca_file(), &registered.endpoint_ca_pem, 0o644)?;
    let wrote_config_paths = dir.write_default_config_paths()?;
    dir.write_identity(&EndpointIdentity {
        id: registered.id.clone(),
        name: registered.display_name.clone(),
        hub_url: hub_url.trim_end_matches('/').to_string(),
        data_ports: None,
        data_address: None,
        node: registered.node.clone(),
    })?;
    Ok(Registered {
        id: registered.id.clone(),
        name: registered.display_name.clone(),
        hub_url: hub_url.to_string(),
        wrote_config_paths,
        node: registered.node.clone(),
    })
}
