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
}

impl EndpointIdentity {
    /// Parses and checks the file's text; the error is one line for the user.
    pub fn parse(text: &str) -> Result<Self, String> {
        let identity: Self = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if identity.id.trim().is_empty() {
            return Err("`id` is empty".into());
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
    }
}
