//! `endpoint.toml`: who this endpoint is and which hub it belongs to.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The endpoint's registration, as written by `ferry -setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointIdentity {
    /// The hub-assigned endpoint id (a UUID).
    pub id: String,
    /// The display name the owner chose.
    pub name: String,
    /// Base URL of the hub, e.g. `https://hub.example.org:8443`.
    pub hub_url: String,
    /// Ports to accept data connections on, `FIRST-LAST` (default 50000-51000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_ports: Option<String>,
    /// Where other endpoints should connect for data, when the address
    /// this machine reaches the hub from is not it (NAT, several
    /// interfaces): a host (`data.example.org`, `192.0.2.7`, `2001:db8::7`),
    /// or a host and a port (`data.example.org:443`, `[2001:db8::7]:443`)
    /// for a port forwarded to the data listener. Without a port, the
    /// listener's own is advertised. See
    /// [`EndpointIdentity::advertised_data_address`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_address: Option<String>,
    /// The node of the endpoint this machine is, when it joined an
    /// existing endpoint with a node key (`ferry endpoint add-node`);
    /// absent: the endpoint's primary machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Everything `endpoint.toml` may hold: the identity and the settings
/// beside it. `umask` and `bwlimit` are not fields of [`EndpointIdentity`]
/// (whose struct literals elsewhere would all need them); read them with
/// [`EndpointIdentity::umask_in`] and [`EndpointIdentity::bwlimit_in`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    id: String,
    name: String,
    hub_url: String,
    #[serde(default)]
    data_ports: Option<String>,
    #[serde(default)]
    data_address: Option<String>,
    #[serde(default)]
    node: Option<String>,
    /// Permission bits received files and directories never get, as octal
    /// text (`"022"`, `"027"`); default: the daemon's own umask.
    #[serde(default)]
    umask: Option<String>,
    /// The endpoint's bandwidth cap, `RATE` as `--bwlimit` spells it
    /// (`"50M"`): what it sends and receives, all tasks together.
    /// Re-read on SIGHUP.
    #[serde(default)]
    bwlimit: Option<String>,
    /// Where the daemon serves its Prometheus metrics (`IP:PORT`, no
    /// authentication: keep it on loopback or a trusted interface).
    #[serde(default)]
    metrics_listen: Option<String>,
    /// `false`: the daemon opens no data listener and advertises no data
    /// address; its transfers' data goes through the hub's relay.
    #[serde(default)]
    data_listen: Option<bool>,
    /// `[hooks.NAME]`: commands a task may ask this endpoint to run once
    /// its files landed (`--on-success NAME`).
    #[serde(default)]
    hooks: BTreeMap<String, HookFile>,
}

/// One `[hooks.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookFile {
    command: Vec<String>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    grantees: bool,
}

/// Seconds a hook may run when its table names no `timeout`.
pub const DEFAULT_HOOK_TIMEOUT: u64 = 600;
/// Longest `timeout` a hook may have: a day.
pub const MAX_HOOK_TIMEOUT: u64 = 86_400;
/// Most hooks one endpoint may configure (they travel in every hello).
pub const MAX_HOOKS: usize = 64;

/// A hook from `endpoint.toml`, checked: a command run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The program (as written: absolute, or a name the daemon looks up
    /// on its `PATH` when it loads the file) and its arguments.
    pub command: Vec<String>,
    /// Seconds before its process group is killed.
    pub timeout_secs: u64,
    /// Variables added to its environment (never one named `FERRY_*`:
    /// the daemon sets those).
    pub env: BTreeMap<String, String>,
    /// Tasks acting for a grantee of the owner (on a shared folder) may
    /// name it too; by default only the owner's own tasks may.
    pub grantees: bool,
}

impl HookFile {
    fn check(self, name: &str) -> Result<Hook, String> {
        let at = |what: String| format!("[hooks.{name}]: {what}");
        ferry_proto::task::check_hook_name(name).map_err(|e| format!("[hooks]: {e}"))?;
        match self.command.first() {
            None => return Err(at("`command` is empty: name the program and its arguments, as [\"/usr/bin/sbatch\", \"job.sh\"]".into())),
            Some(program) if program.is_empty() || program.contains('\0') => {
                return Err(at(format!("`command` names no program: {program:?}")));
            }
            Some(program) if program.contains('/') && !program.starts_with('/') => {
                return Err(at(format!("`command`'s program {program:?} must be an absolute path or a bare name found on PATH")));
            }
            Some(_) => {}
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return Err(at("`command` has an argument with a NUL byte".into()));
        }
        let timeout_secs = self.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT);
        if !(1..=MAX_HOOK_TIMEOUT).contains(&timeout_secs) {
            return Err(at(format!(
                "`timeout` must be 1 to {MAX_HOOK_TIMEOUT} seconds, got {timeout_secs}"
            )));
        }
        for (key, value) in &self.env {
            let well_formed = key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !well_formed || value.contains('\0') {
                return Err(at(format!(
                    "`env` has a variable that cannot be set: {key:?}"
                )));
            }
            if key.starts_with("FERRY_") {
                return Err(at(format!(
                    "`env` may not set {key}: the daemon sets the FERRY_* variables"
                )));
            }
        }
        Ok(Hook {
            command: self.command,
            timeout_secs,
            env: self.env,
            grantees: self.grantees,
        })
    }
}

/// The settings of `endpoint.toml` beside the identity, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Settings {
    umask: Option<u32>,
    bwlimit: Option<u64>,
    metrics_listen: Option<SocketAddr>,
    data_listen: bool,
}

type Hooks = BTreeMap<String, Hook>;

impl EndpointFile {
    fn parse(text: &str) -> Result<(EndpointIdentity, Settings), String> {
        Self::parse_all(text).map(|(identity, settings, _)| (identity, settings))
    }

    fn parse_all(text: &str) -> Result<(EndpointIdentity, Settings, Hooks), String> {
        let file: Self = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if file.hooks.len() > MAX_HOOKS {
            return Err(format!(
                "{} hooks are configured; at most {MAX_HOOKS} fit",
                file.hooks.len()
            ));
        }
        let mut hooks = Hooks::new();
        for (name, hook) in file.hooks {
            let hook = hook.check(&name)?;
            hooks.insert(name, hook);
        }
        let umask = match &file.umask {
            Some(text) => Some(parse_umask(text).ok_or_else(|| {
                format!(
                    "`umask` must be octal permission bits such as \"022\" or \"027\", got {text:?}"
                )
            })?),
            None => None,
        };
        let bwlimit = match &file.bwlimit {
            Some(text) => {
                Some(ferry_proto::rate::parse_rate(text).map_err(|e| format!("`bwlimit`: {e}"))?)
            }
            None => None,
        };
        let metrics_listen = match &file.metrics_listen {
            Some(text) => Some(parse_metrics_listen(text)?),
            None => None,
        };
        if let Some(node) = &file.node {
            ferry_proto::api::check_node_name(node).map_err(|e| format!("`node`: {e}"))?;
        }
        let identity = EndpointIdentity {
            id: file.id,
            name: file.name,
            hub_url: file.hub_url,
            data_ports: file.data_ports,
            data_address: file.data_address,
            node: file.node,
        };
        Ok((
            identity,
            Settings {
                umask,
                bwlimit,
                metrics_listen,
                data_listen: file.data_listen.unwrap_or(true),
            },
            hooks,
        ))
    }
}

impl EndpointIdentity {
    /// Parses and checks the file's text (settings beside the identity
    /// included); the error is one line for the user.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (identity, _settings) = EndpointFile::parse(text)?;
        if identity.id.trim().is_empty() {
            return Err("`id` is empty".into());
        }
        if let Some(ports) = &identity.data_ports
            && parse_port_range(ports).is_none()
        {
            return Err(format!(
                "`data_ports` must look like 50000-51000, got {ports:?}"
            ));
        }
        if let Some(address) = &identity.data_address {
            DataAddress::parse(address)?;
        }
        if !identity.hub_url.starts_with("https://") {
            return Err(format!(
                "`hub_url` must start with https://, got {:?}",
                identity.hub_url
            ));
        }
        Ok(identity)
    }

    /// The `umask` setting of an `endpoint.toml`'s text, checked as
    /// [`EndpointIdentity::parse`] checks it: the permission bits received
    /// files and directories never get; `None` when the file sets none.
    pub fn umask_in(text: &str) -> Result<Option<u32>, String> {
        EndpointFile::parse(text).map(|(_, s)| s.umask)
    }

    /// The `[hooks.NAME]` tables of an `endpoint.toml`'s text, checked as
    /// [`EndpointIdentity::parse`] checks them, by name.
    pub fn hooks_in(text: &str) -> Result<BTreeMap<String, Hook>, String> {
        EndpointFile::parse_all(text).map(|(_, _, hooks)| hooks)
    }

    /// The `bwlimit` setting of an `endpoint.toml`'s text, checked as
    /// [`EndpointIdentity::parse`] checks it: bytes per second; `None`
    /// when the file sets none (no cap).
    pub fn bwlimit_in(text: &str) -> Result<Option<u64>, String> {
        EndpointFile::parse(text).map(|(_, s)| s.bwlimit)
    }

    /// The `metrics_listen` setting of an `endpoint.toml`'s text, checked
    /// as [`EndpointIdentity::parse`] checks it: where the daemon serves
    /// `GET /metrics`; `None` when the file sets none (no metrics server).
    pub fn metrics_listen_in(text: &str) -> Result<Option<SocketAddr>, String> {
        EndpointFile::parse(text).map(|(_, s)| s.metrics_listen)
    }

    /// The `data_listen` setting of an `endpoint.toml`'s text: whether the
    /// daemon opens a data listener (default `true`). Without one, data
    /// reaches this endpoint only through the hub's relay.
    pub fn data_listen_in(text: &str) -> Result<bool, String> {
        EndpointFile::parse(text).map(|(_, s)| s.data_listen)
    }

    /// The `host:port` other endpoints are told to connect to for data:
    /// the `data_address` setting's host, else `local` (the address this
    /// machine reaches the hub from); the setting's port, else
    /// `listener_port` (the data listener's). `None` when there is no host,
    /// or the setting does not parse (`parse` refuses such a file).
    pub fn advertised_data_address(
        setting: Option<&str>,
        listener_port: u16,
        local: Option<IpAddr>,
    ) -> Option<String> {
        let setting = match setting {
            Some(text) => Some(DataAddress::parse(text).ok()?),
            None => None,
        };
        let host = match (&setting, local) {
            (Some(s), _) => s.host.clone(),
            (None, Some(IpAddr::V6(ip))) => format!("[{ip}]"),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return None,
        };
        let port = setting.and_then(|s| s.port).unwrap_or(listener_port);
        Some(format!("{host}:{port}"))
    }

    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by `ferry -setup`. Run `ferry -setup --force` to register anew.\n{body}")
    }
}

/// The `data_address` setting, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DataAddress {
    /// As it goes before `:port`: an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
}

impl DataAddress {
    /// `host`, `host:port`, `IPV6`, `[IPV6]` or `[IPV6]:port`; a host is
    /// a DNS name or an IPv4 address (letters, digits, `.`, `-`, `_`).
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`data_address` must be a host, or a host and a port (data.example.org, data.example.org:50000, [2001:db8::7]:50000), got {text:?}"
            )
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        if let Some(rest) = text.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
            let port = match after {
                "" => None,
                _ => Some(port(after.strip_prefix(':').ok_or_else(bad)?)?),
            };
            return Ok(Self {
                host: format!("[{ip}]"),
                port,
            });
        }
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            return Ok(Self {
                host: format!("[{ip}]"),
                port: None,
            });
        }
        let (host, port) = match text.split_once(':') {
            Some((host, p)) => (host, Some(port(p)?)),
            None => (text, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !host_ok {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// `FIRST-LAST` (or a single port), first <= last, no port 0.
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p = text.trim().parse().ok()?;
            (p, p)
        }
    };
    (first > 0 && first <= last).then_some((first, last))
}

/// `metrics_listen`: an IP address and a port, both explicit. The metrics
/// server has no authentication, so it listens on one named interface
/// (loopback, or one the operator trusts), never on every interface at
/// once, and never on a port the kernel picks, which no scraper could find.
fn parse_metrics_listen(text: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = text.parse().map_err(|_| {
        format!("`metrics_listen` must be IP:PORT such as \"127.0.0.1:9464\" or \"[::1]:9464\", got {text:?}")
    })?;
    if address.ip().is_unspecified() {
        return Err(format!(
            "`metrics_listen` must name one interface's address (it has no authentication), not every interface: got {text:?}; use \"127.0.0.1:{}\" or a trusted interface's address",
            address.port()
        ));
    }
    if address.port() == 0 {
        return Err(format!(
            "`metrics_listen` needs a port a scraper can be told, not 0: got {text:?}"
        ));
    }
    Ok(address)
}

/// A umask as octal text: one to four octal digits, permission bits only
/// (`"022"`, `"0027"`, `"77"`).
fn parse_umask(text: &str) -> Option<u32> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|bits| *bits <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_fields() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        assert_eq!(EndpointIdentity::parse(ok).unwrap().id, "x");
        assert!(EndpointIdentity::parse("id = \"x\"\n").is_err());
        let http = ok.replace("https", "http");
        assert!(
            EndpointIdentity::parse(&http)
                .unwrap_err()
                .contains("https://")
        );
        let extra = format!("{ok}evil = 1\n");
        assert!(EndpointIdentity::parse(&extra).is_err());
        let ports = format!("{ok}data_ports = \"9-8\"\n");
        assert!(
            EndpointIdentity::parse(&ports)
                .unwrap_err()
                .contains("data_ports")
        );
        assert_eq!(parse_port_range("50000-51000"), Some((50000, 51000)));
        assert_eq!(parse_port_range("7"), Some((7, 7)));
        assert_eq!(parse_port_range("0-5"), None);
    }

    #[test]
    fn hooks_are_commands_without_a_shell_checked_by_name() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        assert!(EndpointIdentity::hooks_in(ok).unwrap().is_empty());
        let file = format!(
            "{ok}[hooks.slurm]\ncommand = [\"sbatch\", \"--parsable\", \"job.sh\"]\ntimeout = 30\nenv = {{ SITE = \"x\" }}\n[hooks.note-2]\ncommand = [\"/bin/true\"]\n"
        );
        assert!(EndpointIdentity::parse(&file).is_ok());
        let hooks = EndpointIdentity::hooks_in(&file).unwrap();
        assert_eq!(hooks["slurm"].command, ["sbatch", "--parsable", "job.sh"]);
        assert_eq!(hooks["slurm"].timeout_secs, 30);
        assert_eq!(hooks["slurm"].env["SITE"], "x");
        assert!(!hooks["slurm"].grantees);
        assert_eq!(hooks["note-2"].timeout_secs, DEFAULT_HOOK_TIMEOUT);
        for (table, says) in [
            ("[hooks.a]\ncommand = []\n", "`command` is empty"),
            ("[hooks.a]\ncommand = \"sbatch job.sh\"\n", "invalid type"),
            ("[hooks.a]\ncommand = [\"bin/x\"]\n", "absolute path"),
            ("[hooks.a]\ncommand = [\"/x\"]\ntimeout = 0\n", "`timeout`"),
            (
                "[hooks.a]\ncommand = [\"/x\"]\ntimeout = 86401\n",
                "`timeout`",
            ),
            (
                "[hooks.a]\ncommand = [\"/x\"]\nshell = true\n",
                "unknown field",
            ),
            (
                "[hooks.a]\ncommand = [\"/x\"]\nenv = { FERRY_TASK_ID = \"1\" }\n",
                "FERRY_",
            ),
            (
                "[hooks.a]\ncommand = [\"/x\"]\nenv = { \"A B\" = \"1\" }\n",
                "`env`",
            ),
            ("[hooks.\"a b\"]\ncommand = [\"/x\"]\n", "hook name"),
        ] {
            let err = EndpointIdentity::parse(&format!("{ok}{table}")).unwrap_err();
            assert!(err.contains(says), "{table:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn data_address_is_a_host_with_an_optional_port() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        let advertised = |setting: &str| {
            let file = format!("{ok}data_address = \"{setting}\"\n");
            let identity = EndpointIdentity::parse(&file).unwrap();
            EndpointIdentity::advertised_data_address(
                identity.data_address.as_deref(),
                50_001,
                Some(IpAddr::from([10, 0, 0, 5])),
            )
        };
        for (setting, expected) in [
            ("data.example.org", "data.example.org:50001"),
            ("data.example.org:443", "data.example.org:443"),
            ("192.0.2.7", "192.0.2.7:50001"),
            ("192.0.2.7:61000", "192.0.2.7:61000"),
            ("2001:db8::7", "[2001:db8::7]:50001"),
            ("[2001:db8::7]", "[2001:db8::7]:50001"),
            ("[2001:db8::7]:443", "[2001:db8::7]:443"),
            ("[::1]:8", "[::1]:8"),
            ("nat_gw-1.example", "nat_gw-1.example:50001"),
        ] {
            assert_eq!(advertised(setting).as_deref(), Some(expected), "{setting}");
        }
        for bad in [
            "",
            ":443",
            "host:",
            "host:0",
            "host:65536",
            "host:port",
            "host:1:2",
            "[2001:db8::7",
            "[2001:db8::7]443",
            "[2001:db8::7]:",
            "[192.0.2.7]:443",
            "[host]:443",
            "two words",
            "host/path",
            "user@host",
            "host\\n",
        ] {
            let file = format!("{ok}data_address = \"{bad}\"\n");
            let err = EndpointIdentity::parse(&file).unwrap_err();
            assert!(err.contains("`data_address`"), "{bad:?}: {err}");
        }
        // Without the setting: the address the hub is reached from.
        let local = |ip: IpAddr| EndpointIdentity::advertised_data_address(None, 50_000, Some(ip));
        assert_eq!(
            local(IpAddr::from([127, 0, 0, 1])).as_deref(),
            Some("127.0.0.1:50000")
        );
        assert_eq!(
            local(IpAddr::from(Ipv6Addr::LOCALHOST)).as_deref(),
            Some("[::1]:50000")
        );
        assert_eq!(
            EndpointIdentity::advertised_data_address(None, 50_000, None),
            None
        );
    }

    #[test]
    fn bwlimit_is_an_optional_rate() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        assert_eq!(EndpointIdentity::bwlimit_in(ok), Ok(None));
        let file = format!("{ok}bwlimit = \"50M\"\n");
        assert_eq!(EndpointIdentity::bwlimit_in(&file), Ok(Some(50_000_000)));
        assert_eq!(EndpointIdentity::parse(&file).unwrap().id, "x");
        for bad in ["fast", "1K", "50MB"] {
            let file = format!("{ok}bwlimit = \"{bad}\"\n");
            let err = EndpointIdentity::parse(&file).unwrap_err();
            assert!(err.starts_with("`bwlimit`") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn metrics_listen_is_an_optional_explicit_address() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        assert_eq!(EndpointIdentity::metrics_listen_in(ok), Ok(None));
        for (given, want) in [
            ("127.0.0.1:9464", "127.0.0.1:9464"),
            ("[::1]:9464", "[::1]:9464"),
            ("192.0.2.7:9100", "192.0.2.7:9100"),
        ] {
            let file = format!("{ok}metrics_listen = \"{given}\"\n");
            assert_eq!(
                EndpointIdentity::metrics_listen_in(&file),
                Ok(Some(want.parse().unwrap()))
            );
            assert!(EndpointIdentity::parse(&file).is_ok());
        }
        for bad in [
            "localhost:9464",
            "127.0.0.1",
            "0.0.0.0:9464",
            "[::]:9464",
            "127.0.0.1:0",
            "",
        ] {
            let file = format!("{ok}metrics_listen = \"{bad}\"\n");
            let err = EndpointIdentity::parse(&file).unwrap_err();
            assert!(
                err.starts_with("`metrics_listen`") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn umask_is_an_optional_octal_setting() {
        let ok = "id = \"x\"\nname = \"n\"\nhub_url = \"https://h:1\"\n";
        assert_eq!(EndpointIdentity::umask_in(ok), Ok(None));
        for (text, bits) in [("022", 0o022), ("0027", 0o027), ("77", 0o077), ("0", 0)] {
            let file = format!("{ok}umask = \"{text}\"\n");
            assert_eq!(EndpointIdentity::parse(&file).unwrap().id, "x");
            assert_eq!(EndpointIdentity::umask_in(&file), Ok(Some(bits)), "{text}");
        }
        for bad in ["", "8", "0o22", "-022", "1022", "00022", "rw-r--r--"] {
            let file = format!("{ok}umask = \"{bad}\"\n");
            let err = EndpointIdentity::parse(&file).unwrap_err();
            assert!(
                err.contains("`umask`") && err.contains("022"),
                "{bad:?}: {err}"
            );
            assert!(EndpointIdentity::umask_in(&file).is_err());
        }
        let number = format!("{ok}umask = 0o22\n");
        assert!(
            EndpointIdentity::parse(&number)
                .unwrap_err()
                .contains("string")
        );
    }
}
