//! Logging in to the hub from a terminal: the OAuth2 authorization-code
//! flow with PKCE where the user pastes the code back (RFC 8252 "copy the
//! code"), the stored credentials, and their refresh.

use crate::hub_client::{HubClient, HubError, Trust};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ferry_endpoint::write_atomic;
use ferry_proto::api::{AUTH_CODE_PATH, CLI_CLIENT_ID, SCOPE_SETUP, SCOPE_TRANSFER, TokenResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Asks the user for a line; the CLI implements it on the terminal.
pub trait Prompt {
    fn say(&mut self, line: &str);
    fn ask(&mut self, prompt: &str) -> std::io::Result<String>;
}

/// One authorization request: the URL to open and what proves it was us.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    verifier: String,
    redirect_uri: String,
}

fn random(bytes: usize) -> Result<String, HubError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| HubError::Protocol {
        url: String::new(),
        reason: format!("no randomness: {e}"),
    })?;
    Ok(B64.encode(buf))
}

fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Authorization {
    /// A fresh PKCE verifier (RFC 7636, S256) and the authorize URL.
    pub fn start(hub_url: &str) -> Result<Self, HubError> {
        let base = hub_url.trim_end_matches('/');
        let verifier = random(32)?;
        let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
        let state = random(16)?;
        let redirect_uri = format!("{base}{AUTH_CODE_PATH}");
        let url = format!(
            "{base}/authorize?response_type=code&client_id={CLI_CLIENT_ID}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state={state}&scope={}",
            query_escape(&redirect_uri),
            query_escape(&format!("{SCOPE_SETUP} {SCOPE_TRANSFER}")),
        );
        Ok(Self {
            url,
            verifier,
            redirect_uri,
        })
    }

    /// Trades the pasted code for tokens.
    pub async fn exchange(
        &self,
        client: &HubClient,
        code: &str,
    ) -> Result<TokenResponse, HubError> {
        client
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", code.trim()),
                ("redirect_uri", &self.redirect_uri),
                ("client_id", CLI_CLIENT_ID),
                ("code_verifier", &self.verifier),
            ])
            .await
    }
}

/// The paste-the-code dialogue, exactly as the contract prints it, with
/// the hub at `hub_url`. The hub is checked first ([`HubClient::connect`]):
/// no login URL is shown for a hub that cannot be reached or trusted.
/// Returns the checked client with the tokens.
pub async fn interactive_login(
    hub_url: &str,
    trust: &Trust,
    prompt: &mut dyn Prompt,
) -> Result<(HubClient, TokenResponse), LoginError> {
    let client = HubClient::connect(hub_url, trust).await?;
    let auth = Authorization::start(client.base_url())?;
    prompt.say("Login here:");
    prompt.say("-----");
    prompt.say(&auth.url);
    prompt.say("-----");
    let code = prompt
        .ask("Enter the auth code: ")
        .map_err(LoginError::Input)?;
    if code.trim().is_empty() {
        return Err(LoginError::NoCode);
    }
    let token = auth.exchange(&client, &code).await?;
    Ok((client, token))
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("cannot read the auth code: {0}")]
    Input(std::io::Error),
    #[error("no auth code entered")]
    NoCode,
    #[error("cannot save credentials to {path}: {reason}")]
    Save { path: String, reason: String },
    #[error(
        "not logged in: run `ferry login --hub URL` (or `ferry login` with FERRY_HUB set), or set FERRY_TOKEN and FERRY_HUB"
    )]
    NotLoggedIn,
    #[error("the saved login for {hub} has expired; run `ferry login` again")]
    Expired { hub: String },
    #[error("{path} is unreadable: {reason}; run `ferry login` again")]
    Corrupt { path: String, reason: String },
}

impl LoginError {
    /// The hub's URL was mistyped: a usage error.
    pub fn is_usage(&self) -> bool {
        self.hub_error().is_some_and(HubError::is_usage)
    }

    pub fn hub_error(&self) -> Option<&HubError> {
        match self {
            LoginError::Hub(e) => Some(e),
            _ => None,
        }
    }
}

/// Saved login, `~/.config/ferry/credentials.toml` (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub hub: String,
    /// PEM of the CA trusted for this hub, if not the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_ca_pem: Option<String>,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Credentials {
    pub fn from_token(hub: &str, hub_ca_pem: Option<String>, token: TokenResponse) -> Self {
        Self {
            hub: hub.trim_end_matches('/').to_string(),
            hub_ca_pem,
            access_token: token.access_token,
            refresh_token: token.refresh_token,
            expires_at: now() + token.expires_in as i64,
        }
    }

    /// `$XDG_CONFIG_HOME/ferry/credentials.toml`, else `~/.config/...`.
    pub fn default_path(home: &Path) -> PathBuf {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"));
        config.join("ferry").join("credentials.toml")
    }

    pub fn load(path: &Path) -> Result<Option<Self>, LoginError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LoginError::Corrupt {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| LoginError::Corrupt {
                path: path.display().to_string(),
                reason: e.message().to_string(),
            })
    }

    pub fn save(&self, path: &Path) -> Result<(), LoginError> {
        let fail = |reason: String| LoginError::Save {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(e.to_string()))?;
        }
        let text = toml::to_string(self).map_err(|e| fail(e.to_string()))?;
        write_atomic(path, text.as_bytes(), 0o600).map_err(|e| fail(e.to_string()))
    }

    pub fn trust(&self) -> Result<Trust, LoginError> {
        match &self.hub_ca_pem {
            Some(pem) => Ok(Trust::Ca(
                ferry_tls::certs_from_pem(pem, "the saved hub CA").map_err(HubError::from)?,
            )),
            None => Ok(Trust::System),
        }
    }

    /// A live access token, refreshing (and saving) when it is about to expire.
    pub async fn fresh_token(&mut self, path: &Path) -> Result<String, LoginError> {
        if self.expires_at > now() + 30 {
            return Ok(self.access_token.clone());
        }
        let Some(refresh) = self.refresh_token.clone() else {
            return Err(LoginError::Expired {
                hub: self.hub.clone(),
            });
        };
        let client = HubClient::new(&self.hub, &self.trust()?)?;
        let token = match client
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", CLI_CLIENT_ID),
            ])
            .await
        {
            Ok(t) => t,
            Err(HubError::OAuth { .. }) => {
                return Err(LoginError::Expired {
                    hub: self.hub.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        *self = Credentials::from_token(&self.hub, self.hub_ca_pem.clone(), token);
        self.save(path)?;
        Ok(self.access_token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_carries_pkce_and_the_code_page() {
        let auth = Authorization::start("https://hub.example:8443/").unwrap();
        assert!(auth.url.starts_with(
            "https://hub.example:8443/authorize?response_type=code&client_id=ferry-cli"
        ));
        assert!(
            auth.url
                .contains("redirect_uri=https%3A%2F%2Fhub.example%3A8443%2Fauth%2Fcode")
        );
        assert!(auth.url.contains("code_challenge_method=S256"));
        assert!(auth.url.contains("scope=endpoint%3Asetup%20transfer"));
        let challenge = B64.encode(Sha256::digest(auth.verifier.as_bytes()));
        assert!(auth.url.contains(&format!("code_challenge={challenge}")));
    }

    #[test]
    fn credentials_are_saved_private_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/ferry/credentials.toml");
        let creds = Credentials {
            hub: "https://h:1".into(),
            hub_ca_pem: None,
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            expires_at: 5,
        };
        creds.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Credentials::load(&path).unwrap(), Some(creds));
        assert_eq!(Credentials::load(&dir.path().join("none")).unwrap(), None);
    }
}
