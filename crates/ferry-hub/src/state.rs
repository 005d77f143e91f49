//! The hub's state dir: where each file lives, the `hub.toml` config, and
//! `ferry-hub init`, which creates it all.

use crate::pki;
use crate::store::{self, SqliteStore, Storage};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Layout of the state dir.
#[derive(Debug, Clone)]
pub struct HubDir {
    root: PathBuf,
}

impl HubDir {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            root: std::path::absolute(root)
                .with_context(|| format!("cannot resolve {}", root.display()))?,
        })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("hub.toml")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("hub.db")
    }
    /// The CA the hub's TLS certificate chains to (given to endpoints).
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    /// The CA that signs endpoint certificates.
    pub fn endpoint_ca_cert(&self) -> PathBuf {
        self.root.join("endpoint-ca.crt")
    }
    pub fn endpoint_ca_key(&self) -> PathBuf {
        self.root.join("endpoint-ca.key")
    }
    /// Signs task capabilities for the data channel.
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }

    /// Signs the ID tokens the hub issues as an OpenID provider.
    pub fn oidc_signing_key(&self) -> PathBuf {
        self.root.join("oidc-signing.key")
    }

    /// Loads `hub.toml`, or says how to create it.
    pub fn load_config(&self) -> anyhow::Result<HubConfig> {
        let path = self.config();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not a hub state dir (no hub.toml); create one with `ferry-hub init --dir {} --url https://HOST:PORT`",
                self.root.display(),
                self.root.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let config: HubConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        config
            .check()
            .with_context(|| format!("{} is invalid", path.display()))?;
        Ok(config)
    }

    /// The hub's storage, as `hub.toml` chooses it.
    pub fn open_store(&self) -> anyhow::Result<Arc<dyn Storage>> {
        self.open_store_with(&self.load_config()?)
    }

    /// The hub's storage, as `config` chooses it: the PostgreSQL database
    /// its `database` names, or the SQLite file in the state dir.
    pub fn open_store_with(&self, config: &HubConfig) -> anyhow::Result<Arc<dyn Storage>> {
        store::open(config.database.as_deref(), self.root(), &self.database())
    }
}

/// `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The URL users and endpoints reach the hub at.
    pub url: String,
    /// Where `serve` listens (overridden by `--listen`).
    pub listen: String,
    /// TLS certificate chain (PEM) and key; relative paths are in the state dir.
    /// Point these at your institution's certificate to replace the generated one.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CA certificate that endpoints are told to trust for the hub (PEM).
    pub tls_ca: PathBuf,
    /// Seconds between control-channel heartbeats.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Seconds between two reads of a connected endpoint's registration
    /// (revoked? deleted? its node removed?), at most: a revocation, a
    /// deletion or a node's removal is acted on at once anyway; this
    /// bounds how late one made through another hub instance, or in the
    /// database by hand, is seen.
    #[serde(default = "default_admission_recheck")]
    pub admission_recheck_secs: u64,
    /// Most TLS connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections one client address (an IPv6 /64) holds at once,
    /// counted from accept; an endpoint's control connection stops
    /// counting once its certificate has been verified. Behind a TCP proxy
    /// every client has the proxy's address: raise this to match.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Seconds a client has to finish the TLS handshake, and then each
    /// request head (an idle connection is closed after as long).
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request body, counted from its head.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Files one endpoint serves over HTTPS through the hub at once
    /// (`GET /api/v1/endpoints/{id}/files/...`); more are told 503.
    #[serde(default = "default_max_streams_per_endpoint")]
    pub max_streams_per_endpoint: usize,
    /// Password checks (argon2, about 19 MiB each) run at once.
    #[serde(default = "default_password_checks")]
    pub max_password_checks: usize,
    /// Sign-ins that may wait for a password check; more are answered 503.
    #[serde(default = "default_password_checks_queued")]
    pub max_password_checks_queued: usize,
    /// Seconds an endpoint certificate is valid; endpoints renew over the
    /// control channel when a third of it remains.
    #[serde(default = "default_endpoint_cert_lifetime")]
    pub endpoint_cert_lifetime_secs: u64,
    /// Where the hub keeps its state: a PostgreSQL database
    /// (`postgres://USER@HOST/DB`); absent, the SQLite file `hub.db` in
    /// the state dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// When set, `GET /metrics` answers only requests that carry
    /// `Authorization: Bearer TOKEN` with it; absent, /metrics is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// Days each endpoint's audit log keeps an event; older ones are
    /// removed hourly (`ferry endpoint audit`).
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u64,
    /// `true`: webhooks may POST to loopback, private (RFC 1918,
    /// fc00::/7), link-local and other non-public addresses. Off by
    /// default: a user's webhook could otherwise reach services on the
    /// hub's own network (server-side request forgery).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub webhook_private_addresses: bool,
    /// The relay task notifications are e-mailed through; absent, the hub
    /// sends no e-mail (webhooks still go out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// The domain of accounts' own identities (`NAME@LOCAL_DOMAIN`);
    /// absent, the host of `url`. No identity provider may vouch for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_domain: Option<String>,
    /// How recent an authentication an endpoint's `allowed_domains`
    /// policy accepts, in hours (1 to 8784, a year).
    #[serde(default = "default_identity_max_age_hours")]
    pub identity_max_age_hours: u64,
    /// Upstream OpenID Connect providers users may sign in with.
    #[serde(
        default,
        rename = "identity_provider",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub identity_providers: Vec<IdentityProviderConfig>,
    /// `[relay]`: data streams the hub carries between endpoints that
    /// cannot reach each other. Not written by `init` while it holds the
    /// defaults: a table at the end of `hub.toml` would take in the keys
    /// an admin appends below it.
    #[serde(default, skip_serializing_if = "RelayConfig::is_default")]
    pub relay: RelayConfig,
}

/// `[relay]` in `hub.toml`: when endpoints cannot reach each other (or
/// one never listens, `data_listen = false`), their data streams go
/// through the hub, still encrypted end to end; these bound what that
/// costs the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// `false`: the hub relays nothing; endpoints that cannot reach each
    /// other wait, as before relaying.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Most relayed data streams at once, all tasks together.
    #[serde(default = "default_relay_streams")]
    pub max_streams: usize,
    /// Most relayed data streams of one task at once (a task opens up to 64).
    #[serde(default = "default_relay_task_streams")]
    pub max_streams_per_task: usize,
    /// The most the hub relays per second, all tasks together, `RATE` as
    /// `--bwlimit` spells it (`"100M"`); absent, no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// The most the hub relays per second for one task; absent, no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_rate: Option<String>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_streams: default_relay_streams(),
            max_streams_per_task: default_relay_task_streams(),
            rate: None,
            task_rate: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_relay_streams() -> usize {
    512
}
fn default_relay_task_streams() -> usize {
    64
}

impl RelayConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The two rates, bytes per second (`None`: no cap).
    pub fn rates(&self) -> anyhow::Result<(Option<u64>, Option<u64>)> {
        let parse = |name: &str, text: &Option<String>| -> anyhow::Result<Option<u64>> {
            text.as_deref()
                .map(|t| {
                    ferry_proto::rate::parse_rate(t)
                        .map_err(|e| anyhow::anyhow!("[relay] {name} {t:?}: {e}"))
                })
                .transpose()
        };
        Ok((
            parse("rate", &self.rate)?,
            parse("task_rate", &self.task_rate)?,
        ))
    }

    fn check(&self) -> anyhow::Result<()> {
        for (name, count) in [
            ("max_streams", self.max_streams),
            ("max_streams_per_task", self.max_streams_per_task),
        ] {
            if !(1..=1_000_000).contains(&count) {
                bail!("[relay] {name} must be 1..=1000000, got {count}");
            }
        }
        self.rates().map(|_| ())
    }
}

/// `[smtp]` in `hub.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender's address, `ferry@hub.example.org`.
    pub from: String,
    /// `true`: STARTTLS is required (the relay's certificate verified
    /// against the system's CAs); `false`: plain SMTP, for a relay on
    /// this host or a trusted network.
    #[serde(default = "default_starttls")]
    pub starttls: bool,
    /// Log in to the relay as this user, with the password in `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Relative paths are in the state dir; one line, the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_starttls() -> bool {
    true
}

impl SmtpConfig {
    fn check(&self) -> anyhow::Result<()> {
        if self.host.is_empty() || self.host.len() > 253 {
            bail!("[smtp] host must name the relay (1 to 253 bytes)");
        }
        crate::notify::parse_address(&self.from)
            .map_err(|e| anyhow::anyhow!("[smtp] from {:?}: {e}", self.from))?;
        match (&self.username, &self.password_file) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("[smtp] username and password_file go together: set both or neither")
            }
            (Some(_), Some(_)) if !self.starttls => bail!(
                "[smtp] username needs starttls = true: the relay's password would cross the network in the clear"
            ),
            _ => Ok(()),
        }
    }
}

/// One `[[identity_provider]]` of `hub.toml`: an upstream OpenID Connect
/// provider the hub signs users in with, as a relying party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Its id in URLs: the hub's callback is `URL/auth/oidc/NAME/callback`.
    pub name: String,
    /// What the login page offers.
    pub display_name: String,
    /// Discovery is at `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (relative: in the state dir).
    pub client_secret_file: PathBuf,
    /// The domains it vouches for: identities `NAME@DOMAIN`.
    pub domains: Vec<String>,
    /// A private CA (PEM) for the issuer's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

pub(crate) fn default_identity_max_age_hours() -> u64 {
    24
}

pub(crate) fn default_endpoint_cert_lifetime() -> u64 {
    crate::pki::DEFAULT_ENDPOINT_CERT_LIFETIME_SECS
}

pub(crate) fn default_audit_retention_days() -> u64 {
    90
}

fn default_heartbeat() -> u64 {
    15
}
fn default_admission_recheck() -> u64 {
    60
}
fn default_max_connections() -> usize {
    20_000
}
pub(crate) fn default_max_connections_per_address() -> usize {
    256
}
pub(crate) fn default_max_streams_per_endpoint() -> usize {
    8
}
pub(crate) fn default_header_timeout() -> u64 {
    10
}
pub(crate) fn default_body_timeout() -> u64 {
    60
}
pub(crate) fn default_password_checks() -> usize {
    4
}
pub(crate) fn default_password_checks_queued() -> usize {
    16
}

impl HubConfig {
    fn check(&self) -> anyhow::Result<()> {
        url_host_port(&self.url)?;
        if !(10..=10 * 365 * 24 * 3600).contains(&self.endpoint_cert_lifetime_secs) {
            bail!(
                "endpoint_cert_lifetime_secs must be 10..=315360000 (ten years), got {}",
                self.endpoint_cert_lifetime_secs
            );
        }
        if let Some(token) = &self.metrics_token
            && !(16..=256).contains(&token.len())
        {
            bail!(
                "metrics_token must be 16 to 256 characters (make one with `openssl rand -hex 32`), got {}",
                token.len()
            );
        }
        if let Some(token) = &self.metrics_token
            && !token.bytes().all(|b| b.is_ascii_graphic())
        {
            bail!(
                "metrics_token must be printable ASCII without spaces (make one with `openssl rand -hex 32`)"
            );
        }
        if !(1..=3600).contains(&self.heartbeat_secs) {
            bail!(
                "heartbeat_secs must be 1..=3600, got {}",
                self.heartbeat_secs
            );
        }
        if !(1..=3600).contains(&self.admission_recheck_secs) {
            bail!(
                "admission_recheck_secs must be 1..=3600, got {}",
                self.admission_recheck_secs
            );
        }
        for (name, secs) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                bail!("{name} must be 1..=3600, got {secs}");
            }
        }
        for (name, count) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_password_checks", self.max_password_checks),
            ("max_streams_per_endpoint", self.max_streams_per_endpoint),
        ] {
            if !(1..=1_000_000).contains(&count) {
                bail!("{name} must be 1..=1000000, got {count}");
            }
        }
        if !(1..=100 * 365).contains(&self.audit_retention_days) {
            bail!(
                "audit_retention_days must be 1..=36500, got {}",
                self.audit_retention_days
            );
        }
        if let Some(url) = &self.database {
            // Parsed, not connected: a typo shows at once, with the URL's
            // password hidden.
            store::DatabaseUrl::parse(url, Path::new("."))?;
        }
        if !(1..=8784).contains(&self.identity_max_age_hours) {
            bail!(
                "identity_max_age_hours must be 1..=8784 (a year), got {}",
                self.identity_max_age_hours
            );
        }
        let local = self.local_domain()?;
        let mut names = std::collections::HashSet::new();
        for p in &self.identity_providers {
            let valid_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                bail!(
                    "identity_provider name {:?}: use 1 to 64 of A-Z a-z 0-9 - _",
                    p.name
                );
            }
            if !names.insert(p.name.as_str()) {
                bail!("two identity providers are named {:?}", p.name);
            }
            crate::oidc::check_issuer(&p.issuer)
                .with_context(|| format!("identity_provider {:?}: issuer", p.name))?;
            if p.domains.is_empty() {
                bail!(
                    "identity_provider {:?} vouches for no domain: set domains = [\"example.edu\"]",
                    p.name
                );
            }
            for d in &p.domains {
                let d = crate::identities::check_domain(d)
                    .with_context(|| format!("identity_provider {:?}: domains", p.name))?;
                if d == local {
                    bail!(
                        "identity_provider {:?} vouches for {d}, the domain of this hub's own accounts (local_domain)",
                        p.name
                    );
                }
            }
        }
        if let Some(smtp) = &self.smtp {
            smtp.check()?;
        }
        self.relay.check()?;
        if self.max_password_checks_queued > 1_000_000 {
            bail!(
                "max_password_checks_queued must be at most 1000000, got {}",
                self.max_password_checks_queued
            );
        }
        Ok(())
    }

    /// The domain of accounts' own identities: `local_domain`, else the
    /// host of the hub's URL.
    pub fn local_domain(&self) -> anyhow::Result<String> {
        let domain = match &self.local_domain {
            Some(d) => d.clone(),
            None => url_host_port(&self.url)?.0,
        };
        // A hub reached by address still has a domain of its own: the
        // address, as written in its URL.
        if domain.parse::<std::net::IpAddr>().is_ok() {
            return Ok(domain);
        }
        crate::identities::check_domain(&domain).context("local_domain")
    }

    /// A config path, resolved against the state dir.
    pub fn resolve(&self, dir: &HubDir, path: &Path) -> PathBuf {
        dir.root().join(path)
    }
}

/// Host and port of an `https://` URL (default port 443).
pub fn url_host_port(url: &str) -> anyhow::Result<(String, u16)> {
    ferry_proto::api::https_host_port(url).map_err(anyhow::Error::msg)
}

/// What `init` made, for its output.
#[derive(Debug, Serialize)]
pub struct Initialized {
    pub ca_cert: String,
    pub ca_fingerprint: String,
    pub url: String,
    pub dir: String,
}

/// `ferry-hub init`: creates the state dir (0700), the CAs, the server
/// certificate for the URL's host, the signing keys, the database and
/// `hub.toml`. Refuses to touch an existing hub.
pub fn init(dir: &HubDir, url: &str) -> anyhow::Result<Initialized> {
    let url = url.trim_end_matches('/').to_string();
    let (host, port) = url_host_port(&url)?;
    if dir.config().exists() {
        bail!(
            "{} already holds a hub (hub.toml exists); refusing to overwrite it",
            dir.root().display()
        );
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.root())
        .with_context(|| format!("cannot create {}", dir.root().display()))?;
    fs::set_permissions(dir.root(), fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot chmod {}", dir.root().display()))?;

    let ca = pki::CertificateAuthority::create("ferry hub CA")?;
    let server = ca.issue_server_cert(&host)?;
    let endpoint_ca = pki::CertificateAuthority::create("ferry endpoint CA")?;
    let signing = pki::new_key_pem()?;
    let oidc_signing = crate::oidc_provider::ProviderKey::new_pem()?;
    let write = |path: PathBuf, text: &str, mode: u32| -> anyhow::Result<()> {
        ferry_tls::write_atomic(&path, text.as_bytes(), mode)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write(dir.ca_cert(), &ca.cert_pem, 0o644)?;
    write(dir.ca_key(), &ca.key_pem, 0o600)?;
    write(
        dir.server_cert(),
        &format!("{}{}", server.cert_pem, ca.cert_pem),
        0o644,
    )?;
    write(dir.server_key(), &server.key_pem, 0o600)?;
    write(dir.endpoint_ca_cert(), &endpoint_ca.cert_pem, 0o644)?;
    write(dir.endpoint_ca_key(), &endpoint_ca.key_pem, 0o600)?;
    write(dir.signing_key(), &signing, 0o600)?;
    write(dir.oidc_signing_key(), &oidc_signing, 0o600)?;
    // A new hub keeps its state in SQLite; `migrate-store` moves it.
    SqliteStore::open(&dir.database())?;

    let listen = if host.parse::<std::net::IpAddr>().is_ok() {
        format!(
            "{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            }
        )
    } else {
        format!("0.0.0.0:{port}")
    };
    let config = HubConfig {
        url: url.clone(),
        listen,
        tls_cert: "server.crt".into(),
        tls_key: "server.key".into(),
        tls_ca: "ca.crt".into(),
        heartbeat_secs: default_heartbeat(),
        admission_recheck_secs: default_admission_recheck(),
        max_connections: default_max_connections(),
        max_connections_per_address: default_max_connections_per_address(),
        header_timeout_secs: default_header_timeout(),
        body_timeout_secs: default_body_timeout(),
        max_streams_per_endpoint: default_max_streams_per_endpoint(),
        max_password_checks: default_password_checks(),
        max_password_checks_queued: default_password_checks_queued(),
        endpoint_cert_lifetime_secs: default_endpoint_cert_lifetime(),
        database: None,
        metrics_token: None,
        audit_retention_days: default_audit_retention_days(),
        webhook_private_addresses: false,
        smtp: None,
        local_domain: None,
        identity_max_age_hours: default_identity_max_age_hours(),
        identity_providers: Vec::new(),
        relay: RelayConfig::default(),
    };
    let text = format!(
        "# ferry-hub configuration. Edit, then restart `ferry-hub serve`.\n# To use your institution's certificate, point tls_cert/tls_key at it and\n# tls_ca at the CA that issued it.\n{}",
        toml::to_string(&config).context("cannot render hub.toml")?
    );
    write(dir.config(), &text, 0o600)?;
    Ok(Initialized {
        ca_cert: dir.ca_cert().display().to_string(),
        ca_fingerprint: ferry_proto::setup_key::format_fingerprint(&ca.cert_sha256),
        url,
        dir: dir.root().display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            url_host_port("https://h.example:8443/x").unwrap(),
            ("h.example".into(), 8443)
        );
        assert_eq!(url_host_port("https://[::1]:9").unwrap(), ("::1".into(), 9));
        assert_eq!(url_host_port("https://h").unwrap().1, 443);
        assert!(url_host_port("http://h").is_err());
        assert!(url_host_port("https://:80").is_err());
    }

    #[test]
    fn a_metrics_token_is_optional_but_never_short_or_spaced() {
        let config = |extra: &str| -> anyhow::Result<HubConfig> {
            let config: HubConfig = toml::from_str(&format!(
                "url = \"https://h:8443\"\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"s.crt\"\ntls_key = \"s.key\"\ntls_ca = \"ca.crt\"\n{extra}"
            ))?;
            config.check()?;
            Ok(config)
        };
        assert_eq!(config("").unwrap().metrics_token, None);
        let good = "0123456789abcdef0123";
        assert_eq!(
            config(&format!("metrics_token = \"{good}\""))
                .unwrap()
                .metrics_token
                .as_deref(),
            Some(good)
        );
        for bad in [
            "",
            "short",
            "0123456789abcdef 0123",
            "0123456789abcdef\\n0123",
        ] {
            let err = config(&format!("metrics_token = \"{bad}\"")).unwrap_err();
            assert!(
                err.to_string().starts_with("metrics_token must"),
                "{bad:?}: {err}"
            );
        }
        let long = "x".repeat(257);
        assert!(config(&format!("metrics_token = \"{long}\"")).is_err());
    }

    #[test]
    fn identity_providers_are_checked_when_the_config_is_read() {
        let base = r#"url = "https://Hub.Example.org:8443"
listen = "0.0.0.0:8443"
tls_cert = "server.crt"
tls_key = "server.key"
tls_ca = "ca.crt"
"#;
        let provider = |name: &str, issuer: &str, domains: &str| {
            format!(
                "\n[[identity_provider]]\nname = \"{name}\"\ndisplay_name = \"Campus\"\nissuer = \"{issuer}\"\nclient_id = \"c\"\nclient_secret_file = \"s\"\ndomains = [{domains}]\n"
            )
        };
        let check = |text: &str| {
            let config: HubConfig = toml::from_str(text).unwrap();
            config
                .check()
                .map(|()| config)
                .map_err(|e| format!("{e:#}"))
        };
        let good = check(&format!(
            "{base}{}",
            provider("campus", "https://idp.example.edu", "\"example.edu\"")
        ))
        .unwrap();
        assert_eq!(good.local_domain().unwrap(), "hub.example.org");
        assert_eq!(good.identity_max_age_hours, 24);
        assert_eq!(good.identity_providers[0].domains, ["example.edu"]);
        for (bad, says) in [
            (
                provider("campus", "http://idp.example.edu", "\"example.edu\""),
                "https://",
            ),
            (
                provider("campus", "https://idp.example.edu", "\"hub.example.org\""),
                "local_domain",
            ),
            (
                provider("campus", "https://idp.example.edu", ""),
                "no domain",
            ),
            (
                provider("cam pus", "https://idp.example.edu", "\"example.edu\""),
                "name",
            ),
            (
                format!(
                    "{}{}",
                    provider("campus", "https://a.example", "\"a.example\""),
                    provider("campus", "https://b.example", "\"b.example\"")
                ),
                "two identity providers",
            ),
        ] {
            let err = check(&format!("{base}{bad}")).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
        let err = check(&format!("identity_max_age_hours = 0\n{base}")).unwrap_err();
        assert!(err.contains("identity_max_age_hours"), "{err}");
    }
}
