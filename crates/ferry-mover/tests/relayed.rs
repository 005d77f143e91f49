//! A source that cannot connect to the destination falls back to a
//! relayed stream, and the destination takes it through the same door as
//! a direct one. The hub's part (pairing two dial-backs) is an in-memory
//! pipe here; the hub's own tests and `tests/relay.rs` run the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use ferry_mover::dest::DataAcceptor;
use ferry_mover::link::{DataIo, RelayDial, RelayDialer, RelayedIo, Route};
use ferry_proto::task::TransferOptions;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::{CHUNK, item, pattern, snapshot, world};
use tokio::sync::watch;

/// Relays by handing one end of a pipe to the destination's acceptor,
/// noting each stream's reason.
struct Pipe {
    acceptor: Arc<DataAcceptor>,
    reasons: Mutex<Vec<String>>,
    dialed: AtomicUsize,
}

impl RelayDialer for Pipe {
    fn dial(&self, _stream: u16, reason: &str) -> RelayDial {
        self.dialed.fetch_add(1, Ordering::SeqCst);
        self.reasons.lock().unwrap().push(reason.to_string());
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        self.acceptor
            .take(DataIo::Relayed(Box::new(theirs)), [127, 0, 0, 1].into());
        Box::pin(async move { Ok(Box::new(ours) as Box<dyn RelayedIo>) })
    }
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_destination_is_reached_through_the_relay_byte_for_byte() {
    let w = world().await;
    let src = w.a.home.join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/big"), pattern(2 * CHUNK + 5, 3)).unwrap();
    for i in 0..10u8 {
        std::fs::write(src.join(format!("f{i}")), pattern(100 + i as usize, i)).unwrap();
    }
    let (_accepting, accepting_rx) = watch::channel(true);
    let pipe = Arc::new(Pipe {
        acceptor: DataAcceptor::new(w.b.ctx.clone(), w.sessions.clone(), accepting_rx).unwrap(),
        reasons: Mutex::default(),
        dialed: AtomicUsize::new(0),
    });
    let route = Route {
        direct: Some(closed_port()),
        relay: Some(pipe.clone()),
    };
    let options = TransferOptions {
        streams: Some(3),
        ..TransferOptions::default()
    };
    let sealed = w.capability(1, vec![item("/~/data", "/~/data", true)], options);
    let (_cancel, cancel_rx) = watch::channel(false);
    ferry_mover::source::send_via(w.a.ctx.clone(), sealed, route, cancel_rx)
        .await
        .unwrap();
    assert_eq!(snapshot(&w.b.home.join("data")), snapshot(&src));
    // Every stream went through the relay, each saying why.
    assert_eq!(pipe.dialed.load(Ordering::SeqCst), 3);
    let reasons = pipe.reasons.lock().unwrap().clone();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("cannot connect to the destination")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_stream_meets_the_destinations_own_checks() {
    let w = world().await;
    std::fs::write(w.a.home.join("f"), b"x").unwrap();
    // Paused: the destination refuses relayed streams as it refuses direct ones.
    let (_accepting, accepting_rx) = watch::channel(false);
    let pipe = Arc::new(Pipe {
        acceptor: DataAcceptor::new(w.b.ctx.clone(), w.sessions.clone(), accepting_rx).unwrap(),
        reasons: Mutex::default(),
        dialed: AtomicUsize::new(0),
    });
    let route = Route {
        direct: None,
        relay: Some(pipe.clone()),
    };
    let sealed = w.capability(
        1,
        vec![item("/~/f", "/~/f", false)],
        TransferOptions::default(),
    );
    let (_cancel, cancel_rx) = watch::channel(false);
    let err = ferry_mover::source::send_via(w.a.ctx.clone(), sealed, route, cancel_rx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("paused"), "{err}");
    assert!(!w.b.home.join("f").exists());
    assert_eq!(
        pipe.reasons.lock().unwrap().as_slice(),
        ["the destination takes no direct connections"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_an_unreachable_destination_is_an_error_that_says_where() {
    let w = world().await;
    std::fs::write(w.a.home.join("f"), b"x").unwrap();
    let addr = closed_port();
    let sealed = w.capability(
        1,
        vec![item("/~/f", "/~/f", false)],
        TransferOptions::default(),
    );
    let (_cancel, cancel_rx) = watch::channel(false);
    let err = ferry_mover::source::send_via(
        w.a.ctx.clone(),
        sealed,
        Route::direct(addr.clone()),
        cancel_rx,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(&addr), "{err}");
}
