//! Dial-back connections to the hub: when the hub asks over the control
//! link for a stream (an HTTPS download or upload through it, a relayed
//! transfer), the endpoint opens a new TLS connection to the hub's port
//! with its own certificate, ALPN `ferry-relay/1`, and says which request
//! it answers. The TLS settings, address and error words are hub_link's.

use crate::hub_link::{DIAL_TIMEOUT, describe_tls_error, dial, tls_config};
use ferry_endpoint::EndpointDir;
use ferry_proto::frame;
use ferry_proto::relay::{self, RelayAnswer, RelayHello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A dial-back connection the hub accepted.
pub(crate) type HubStream = tokio_rustls::client::TlsStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("cannot reach the hub: {0}")]
    Connect(String),
    #[error("the hub refused the dial-back: {0}")]
    Refused(String),
    #[error("dial-back protocol error: {0}")]
    Protocol(String),
}

/// Opens a dial-back connection to the hub at `url` as the endpoint set up
/// in `dir`, says `hello`, and returns the stream once the hub accepted it.
pub(crate) async fn dial_hub(
    url: &str,
    dir: &EndpointDir,
    hello: &RelayHello,
) -> Result<HubStream, DialError> {
    dial_hub_via(url, None, dir, hello).await
}

/// As [`dial_hub`], connecting to `via` (`HOST:PORT`, the hub instance
/// that waits for this dial-back behind a front) when the hub named one;
/// the hub's certificate is still verified by `url`'s name.
pub(crate) async fn dial_hub_via(
    url: &str,
    via: Option<&str>,
    dir: &EndpointDir,
    hello: &RelayHello,
) -> Result<HubStream, DialError> {
    let (host, port) = ferry_proto::api::https_host_port(url).map_err(DialError::Connect)?;
    let server_name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|_| DialError::Connect(format!("{host:?} is not a valid hub host name")))?;
    let config = tls_config(dir, relay::ALPN)
        .map_err(|e| DialError::Connect(format!("cannot load the endpoint's credentials: {e}")))?;
    let (host, port) = match via.and_then(|v| v.rsplit_once(':')) {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>().unwrap_or(port),
        ),
        None => (host, port),
    };
    let tcp = dial(&host, port).await.map_err(DialError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls =
        match tokio::time::timeout(DIAL_TIMEOUT, connector.connect(server_name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return Err(DialError::Connect(describe_tls_error(dir, &e))),
            Err(_) => {
                return Err(DialError::Connect(format!(
                    "timed out in the TLS handshake with {host}:{port}"
                )));
            }
        };
    let answer = tokio::time::timeout(DIAL_TIMEOUT, async {
        let bytes = relay::encode(hello).map_err(|e| DialError::Protocol(e.to_string()))?;
        tls.write_all(&bytes)
            .await
            .map_err(|e| DialError::Connect(describe_tls_error(dir, &e)))?;
        tls.flush()
            .await
            .map_err(|e| DialError::Connect(describe_tls_error(dir, &e)))?;
        let mut header = [0u8; frame::HEADER_LEN];
        tls.read_exact(&mut header)
            .await
            .map_err(|e| DialError::Connect(describe_tls_error(dir, &e)))?;
        let len = frame::decode_header(header, relay::MAX_FRAME)
            .map_err(|e| DialError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        tls.read_exact(&mut body)
            .await
            .map_err(|e| DialError::Connect(describe_tls_error(dir, &e)))?;
        relay::decode_answer(&body).map_err(|e| DialError::Protocol(e.to_string()))
    })
    .await
    .map_err(|_| DialError::Protocol("the hub did not answer the dial-back in time".into()))??;
    match answer {
        RelayAnswer::Accepted => Ok(tls),
        RelayAnswer::Refused { reason } => Err(DialError::Refused(reason)),
    }
}
