//! The daemon's side of the hub link: dial, report why it failed in words a
//! user can act on, back off with jitter, dial again.
//!
//! The control-channel handshake (mutual TLS, versions, heartbeats) is not
//! built yet; until it is, a dial that reaches the hub's port is reported as
//! reachable-but-not-connected, never as connected.

use ferry_proto::backoff::Backoff;
use ferry_proto::local_api::HubState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The link as the status report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubView {
    pub state: HubState,
    pub detail: Option<String>,
}

impl HubView {
    pub fn connecting() -> Self {
        Self {
            state: HubState::Connecting,
            detail: None,
        }
    }
}

/// Host and port out of `https://host[:port][/...]`, brackets kept off IPv6.
pub(crate) fn hub_address(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("hub URL {url:?} must start with https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("hub URL {url:?} has no usable host"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("hub URL {url:?} has an unclosed [IPv6] host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("hub URL {url:?} has an invalid port {p:?}"))?,
    };
    if host.is_empty() {
        return Err(format!("hub URL {url:?} has no host"));
    }
    Ok((host.to_string(), port))
}

fn describe_dial_error(target: &str, port: u16, err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused => {
            format!(
                "connection refused by {target} (is the hub running and listening on port {port}?)"
            )
        }
        TimedOut => format!(
            "timed out connecting to {target} (a firewall may drop outbound traffic to port {port})"
        ),
        HostUnreachable | NetworkUnreachable => format!("no route to {target}: {err}"),
        _ => format!("cannot connect to {target}: {err}"),
    }
}

fn jitter_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// One dial: resolve, then try each address. The error is the user's line.
async fn dial(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> =
        match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(format!("cannot resolve hub host {host:?}: {e}")),
            Err(_) => return Err(format!("timed out resolving hub host {host:?}")),
        };
    let mut last = format!("hub host {host:?} resolved to no addresses");
    for addr in addrs {
        let target = addr.to_string();
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = describe_dial_error(&target, port, &e),
            Err(_) => {
                last = describe_dial_error(&target, port, &std::io::ErrorKind::TimedOut.into())
            }
        }
    }
    Err(last)
}

/// Keeps dialing the hub until `shutdown` turns true.
pub(crate) async fn run(
    url: String,
    view: watch::Sender<HubView>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (host, port) = match hub_address(&url) {
        Ok(a) => a,
        Err(reason) => {
            tracing::error!(%reason, "hub link disabled");
            view.send_replace(HubView {
                state: HubState::Disconnected,
                detail: Some(reason),
            });
            return;
        }
    };
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
    let mut seed = jitter_seed();
    loop {
        view.send_replace(HubView::connecting());
        let reason = tokio::select! {
            result = dial(&host, port) => match result {
                Ok(stream) => {
                    drop(stream);
                    format!("the hub at {host}:{port} accepts connections, but this build of ferry has no control channel yet")
                }
                Err(reason) => reason,
            },
            _ = shutdown.changed() => return,
        };
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = backoff.on_failure(seed >> 11);
        tracing::warn!(%reason, retry_in = ?wait, "hub not connected");
        view.send_replace(HubView {
            state: HubState::Disconnected,
            detail: Some(format!("{reason}; next try in {}s", wait.as_secs().max(1))),
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_addresses_parse_like_urls() {
        let ok = |u: &str| hub_address(u).unwrap();
        assert_eq!(
            ok("https://hub.example.org"),
            ("hub.example.org".into(), 443)
        );
        assert_eq!(ok("https://127.0.0.1:8443/"), ("127.0.0.1".into(), 8443));
        assert_eq!(ok("https://[::1]:9000/api"), ("::1".into(), 9000));
        for bad in [
            "http://h",
            "https://",
            "https://h:0",
            "https://h:99999",
            "https://u@h",
            "https://[::1",
        ] {
            assert!(hub_address(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_refused_with_a_hint() {
        // Bind then drop, so the port is known to be closed on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = dial("127.0.0.1", port).await.unwrap_err();
        assert!(err.contains("connection refused"), "{err}");
        assert!(err.contains(&port.to_string()), "{err}");
    }
}
