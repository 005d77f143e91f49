//! `endpoint.toml`: who this endpoint is and which hub it belongs to.

use serde::{Deserialize, Serialize};

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
    /// The host other endpoints should connect to for data, when the
    /// address this machine reaches the hub from is not it (NAT, several
    /// interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_address: Option<String>,
}

impl EndpointIdentity {
    /// Parses and checks the file's text; the error is one line for the user.
    pub fn parse(text: &str) -> Result<Self, String> {
        let identity: Self = toml::from_str(text).map_err(|e| e.message().to_string())?;
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
        if !identity.hub_url.starts_with("https://") {
            return Err(format!(
                "`hub_url` must start with https://, got {:?}",
                identity.hub_url
            ));
        }
        Ok(identity)
    }

    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!("# Written by `ferry -setup`. Run `ferry -setup --force` to register anew.\n{body}")
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
}
