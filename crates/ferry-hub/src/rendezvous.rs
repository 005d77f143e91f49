//! Dial-back connections: the hub asks a connected endpoint (over its
//! control link) to open a new TLS connection to the hub, and hands that
//! stream to whoever asked.
//!
//! [`Rendezvous::expect`] opens a single-use slot under a fresh random
//! token; the endpoint dials with ALPN `ferry-relay/1` and its own
//! certificate, says [`RelayHello::Dialback`] with the token, and
//! [`serve_connection`] gives the stream to the slot's [`Arrival`] once the
//! certificate names the endpoint the slot was opened for and that
//! endpoint is still admitted. Slots go on arrival, at expiry and when
//! their `Arrival` is dropped, and only so many are open at once.

use crate::server::Hub;
use ferry_proto::frame;
use ferry_proto::relay::{self, RelayAnswer, RelayHello};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A dial-back connection once the hub accepted it.
pub type RelayStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Most slots open at once: each is a waiter somewhere in the hub.
pub const MAX_OPEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    #[error("too many dial-back connections are awaited; try again")]
    Busy,
    #[error("no randomness for a dial-back token")]
    NoRandomness,
    #[error("the endpoint did not dial back within {0:?}")]
    Expired(Duration),
    #[error("the dial-back slot was closed")]
    Closed,
}

#[derive(Debug)]
struct Slot<S> {
    endpoint_id: String,
    deadline: Instant,
    deliver: oneshot::Sender<S>,
}

type Slots<S> = Arc<Mutex<HashMap<String, Slot<S>>>>;

/// The open slots. `S` is the stream type (tests use in-memory pipes).
#[derive(Debug)]
pub struct Rendezvous<S = RelayStream> {
    slots: Slots<S>,
    max: usize,
}

impl<S> Default for Rendezvous<S> {
    fn default() -> Self {
        Self::with_limit(MAX_OPEN)
    }
}

fn lock<S>(slots: &Slots<S>) -> std::sync::MutexGuard<'_, HashMap<String, Slot<S>>> {
    // The map stays consistent whatever panicked while holding it.
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

/// One awaited dial-back; dropping it closes its slot.
#[derive(Debug)]
pub struct Arrival<S = RelayStream> {
    token: String,
    slots: Slots<S>,
    deadline: Instant,
    ttl: Duration,
    stream: oneshot::Receiver<S>,
}

impl<S> Rendezvous<S> {
    pub fn with_limit(max: usize) -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    /// Opens a slot for `endpoint_id` to dial into within `ttl`: the token
    /// to send it, and the arrival to wait on.
    pub fn expect(
        &self,
        endpoint_id: &str,
        ttl: Duration,
    ) -> Result<(String, Arrival<S>), RendezvousError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| RendezvousError::NoRandomness)?;
        let token = crate::secrets::hex(&secret);
        let now = Instant::now();
        let deadline = now + ttl;
        let (deliver, stream) = oneshot::channel();
        let mut slots = lock(&self.slots);
        // Slots whose waiter is gone or whose time is up hold no place.
        slots.retain(|_, s| s.deadline > now && !s.deliver.is_closed());
        if slots.len() >= self.max {
            return Err(RendezvousError::Busy);
        }
        slots.insert(
            token.clone(),
            Slot {
                endpoint_id: endpoint_id.to_string(),
                deadline,
                deliver,
            },
        );
        drop(slots);
        Ok((
            token.clone(),
            Arrival {
                token,
                slots: self.slots.clone(),
                deadline,
                ttl,
                stream,
            },
        ))
    }

    /// How many slots are open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Takes the slot `token` names, if `endpoint_id` may fill it now.
    /// Any presentation of a token uses it up, right or wrong.
    fn take(&self, token: &str, endpoint_id: &str) -> Result<oneshot::Sender<S>, String> {
        let slot = lock(&self.slots)
            .remove(token)
            .ok_or_else(|| "no dial-back is awaited under this token".to_string())?;
        if slot.endpoint_id != endpoint_id {
            return Err("this dial-back was asked of another endpoint".into());
        }
        if slot.deadline <= Instant::now() || slot.deliver.is_closed() {
            return Err("this dial-back is no longer awaited".into());
        }
        Ok(slot.deliver)
    }
}

impl<S> Arrival<S> {
    /// The endpoint's stream, once it dialled with the token.
    pub async fn wait(mut self) -> Result<S, RendezvousError> {
        match tokio::time::timeout_at(self.deadline, &mut self.stream).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(_)) => Err(RendezvousError::Closed),
            Err(_) => Err(RendezvousError::Expired(self.ttl)),
        }
    }
}

impl<S> Drop for Arrival<S> {
    fn drop(&mut self) {
        lock(&self.slots).remove(&self.token);
    }
}

/// Serves one `ferry-relay/1` connection: the hello, the checks, the answer,
/// then the stream goes to its waiter.
pub async fn serve_connection(hub: Arc<Hub>, tls: RelayStream, peer_cert: Option<Vec<u8>>) {
    // Any machine (node) of an endpoint dials back for it.
    let admitted = match crate::control::admission(&hub, peer_cert.as_deref()) {
        Ok((id, _node)) => Ok(id),
        Err(crate::control::NotAdmitted::Refused(_, message)) => Err(message),
        Err(crate::control::NotAdmitted::Unknowable) => {
            Err("the hub cannot read its registry now".to_string())
        }
    };
    let within = Duration::from_secs(hub.config.header_timeout_secs);
    if let Some(onward) = admit(&hub.rendezvous, tls, admitted, within).await {
        match onward.hello {
            RelayHello::Relay {
                task_id,
                attempt,
                stream,
                reason,
            } => {
                let ask = crate::relay::Ask {
                    task_id,
                    attempt,
                    stream,
                    reason,
                };
                crate::relay::serve_source(hub, onward.stream, onward.endpoint_id, ask).await;
            }
            RelayHello::Dialback { .. } => {}
        }
    }
}

/// A hello another part of the hub answers (a relayed data stream's),
/// from an admitted endpoint, with its stream.
pub(crate) struct Onward<S> {
    pub stream: S,
    pub endpoint_id: String,
    pub hello: RelayHello,
}

/// The protocol of [`serve_connection`] once the certificate was judged
/// (`admitted`: the endpoint it names, or why it may not dial back).
/// A hello that is not a dial-back, from an admitted endpoint, is handed
/// back unanswered.
pub(crate) async fn admit<S>(
    rendezvous: &Rendezvous<S>,
    mut stream: S,
    admitted: Result<String, String>,
    within: Duration,
) -> Option<Onward<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match tokio::time::timeout(within, read_hello(&mut stream)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "bad dial-back hello");
            return None;
        }
        Err(_) => {
            tracing::debug!("no dial-back hello in time");
            return None;
        }
    };
    if let (Ok(endpoint_id), RelayHello::Relay { .. }) = (&admitted, &hello) {
        return Some(Onward {
            endpoint_id: endpoint_id.clone(),
            stream,
            hello,
        });
    }
    let decided = admitted.and_then(|endpoint_id| match &hello {
        RelayHello::Dialback { token } => rendezvous
            .take(token, &endpoint_id)
            .map(|deliver| (endpoint_id, deliver)),
        // Handed on above once admitted.
        RelayHello::Relay { .. } => Err("a relay hello from an endpoint not admitted".into()),
    });
    let answer = match &decided {
        Ok(_) => RelayAnswer::Accepted,
        Err(reason) => RelayAnswer::Refused {
            reason: reason.clone(),
        },
    };
    let sent = match relay::encode(&answer) {
        Ok(bytes) => stream.write_all(&bytes).await.and(stream.flush().await),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a dial-back answer");
            return None;
        }
    };
    match (decided, sent) {
        (Ok((endpoint_id, deliver)), Ok(())) => {
            if deliver.send(stream).is_err() {
                tracing::debug!(endpoint = %endpoint_id, "a dial-back arrived after its waiter left");
            }
        }
        (Ok(_), Err(e)) => tracing::debug!(error = %e, "dial-back answer not delivered"),
        (Err(reason), _) => tracing::info!(%reason, "dial-back refused"),
    }
    None
}

async fn read_hello<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RelayHello, String> {
    let mut header = [0u8; frame::HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| e.to_string())?;
    let len = frame::decode_header(header, relay::MAX_FRAME).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    relay::decode_hello(&body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    const WITHIN: Duration = Duration::from_secs(5);

    /// What the endpoint hears after saying `hello` over its end of a pipe.
    async fn dial(
        rendezvous: &Rendezvous<DuplexStream>,
        admitted: Result<String, String>,
        token: &str,
    ) -> (RelayAnswer, DuplexStream) {
        let (mut endpoint, hub_side) = tokio::io::duplex(64 * 1024);
        let hello = RelayHello::Dialback {
            token: token.to_string(),
        };
        endpoint
            .write_all(&relay::encode(&hello).unwrap())
            .await
            .unwrap();
        admit(rendezvous, hub_side, admitted, WITHIN).await;
        let mut header = [0u8; 4];
        endpoint.read_exact(&mut header).await.unwrap();
        let mut body = vec![0u8; frame::decode_header(header, relay::MAX_FRAME).unwrap()];
        endpoint.read_exact(&mut body).await.unwrap();
        (relay::decode_answer(&body).unwrap(), endpoint)
    }

    #[tokio::test]
    async fn the_named_endpoint_dials_in_and_its_stream_reaches_the_waiter() {
        let rendezvous = Rendezvous::default();
        let (token, arrival) = rendezvous.expect("ep-1", WITHIN).unwrap();
        assert_eq!(token.len(), 64);
        let (answer, mut endpoint) = dial(&rendezvous, Ok("ep-1".into()), &token).await;
        assert_eq!(answer, RelayAnswer::Accepted);
        let mut stream = arrival.wait().await.unwrap();
        endpoint.write_all(b"bytes").await.unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"bytes");
        assert_eq!(rendezvous.open(), 0);
        // Single use: the same token again is refused.
        let (again, _) = dial(&rendezvous, Ok("ep-1".into()), &token).await;
        assert!(matches!(again, RelayAnswer::Refused { .. }), "{again:?}");
    }

    #[tokio::test]
    async fn another_endpoint_an_unadmitted_one_or_a_wrong_token_is_refused() {
        let rendezvous = Rendezvous::default();
        let (token, arrival) = rendezvous.expect("ep-1", WITHIN).unwrap();
        let (answer, _) = dial(&rendezvous, Ok("ep-2".into()), &token).await;
        assert!(
            matches!(&answer, RelayAnswer::Refused { reason } if reason.contains("another endpoint")),
            "{answer:?}"
        );
        // The token was used up by the wrong presentation.
        assert!(matches!(arrival.wait().await, Err(RendezvousError::Closed)));
        let (token, _arrival) = rendezvous.expect("ep-1", WITHIN).unwrap();
        let (answer, _) = dial(&rendezvous, Err("revoked".into()), &token).await;
        assert_eq!(
            answer,
            RelayAnswer::Refused {
                reason: "revoked".into()
            }
        );
        let (answer, _) = dial(&rendezvous, Ok("ep-1".into()), &"0".repeat(64)).await;
        assert!(matches!(answer, RelayAnswer::Refused { .. }));
    }

    #[tokio::test]
    async fn slots_close_at_expiry_and_on_drop_and_are_bounded() {
        let rendezvous: Rendezvous<DuplexStream> = Rendezvous::with_limit(2);
        let (_, arrival) = rendezvous
            .expect("ep-1", Duration::from_millis(10))
            .unwrap();
        assert!(matches!(
            arrival.wait().await,
            Err(RendezvousError::Expired(_))
        ));
        assert_eq!(rendezvous.open(), 0);
        let (_, first) = rendezvous.expect("ep-1", WITHIN).unwrap();
        let (_, _second) = rendezvous.expect("ep-1", WITHIN).unwrap();
        assert!(matches!(
            rendezvous.expect("ep-1", WITHIN),
            Err(RendezvousError::Busy)
        ));
        drop(first);
        assert_eq!(rendezvous.open(), 1);
        assert!(rendezvous.expect("ep-1", WITHIN).is_ok());
    }
}
