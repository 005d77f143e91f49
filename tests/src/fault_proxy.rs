//! A loopback TCP proxy that misbehaves on request: tests put it between a
//! daemon and the hub (control) or between two endpoints (data) and set a
//! [`Fault`] at any moment: delay, drop, stall, truncate, or flip a bit.
//!
//! Plain threads over `std::net`, no runtime: an acceptor, and two pumps
//! per connection (one each way). Every blocking call has a short timeout,
//! so every thread notices a new fault, and the proxy's end, within
//! [`POLL`]; dropping the [`FaultProxy`] closes every connection and joins
//! every thread.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any of the proxy's threads blocks before looking again.
pub const POLL: Duration = Duration::from_millis(20);
/// A read forwards at most this much at a time.
const READ_SIZE: usize = 64 * 1024;
/// Connecting to the target is given this long.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Which way bytes go through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From whoever connected to the proxy towards the target.
    Upstream,
    /// From the target back to whoever connected.
    Downstream,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        }
    }
}

/// What the proxy does to the bytes it carries, from the moment it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    Pass,
    /// Wait this long before forwarding each read (up to 64 KiB).
    Delay(Duration),
    /// Close every open connection now; a connection made while this holds
    /// is closed at once, before any byte passes.
    Drop,
    /// Forward nothing and read nothing more (bytes already read are held);
    /// connections stay open and new ones are accepted and held too. When
    /// the fault is cleared, what was held goes through.
    Stall,
    /// The next `connections` connections made are closed, both ways, once
    /// `after` bytes (both directions together) passed through each.
    /// Connections open when it is set, and later ones, pass.
    Truncate { after: u64, connections: u32 },
    /// The byte at `offset` going `direction` gets one bit flipped, once:
    /// counted from the start of a connection made after the fault is set,
    /// and from the moment it is set on a connection already open. The
    /// first connection to reach it is hit; after that everything passes.
    Flip { direction: Direction, offset: u64 },
}

/// A proxy on `127.0.0.1:0` forwarding every connection to one target.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    closing: AtomicBool,
    state: Mutex<State>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct State {
    fault: Fault,
    /// Counts [`FaultProxy::set`] calls: a connection chosen for a
    /// truncation is cut only while that very fault holds.
    generation: u64,
    truncations_left: u32,
    flip_done: bool,
    next_id: u64,
    conns: HashMap<u64, Conn>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    accepted: u64,
    refused: u64,
    truncated: u64,
    flipped: u64,
    forwarded: [u64; 2],
}

/// One proxied connection, as the pumps and the fault setter see it.
#[derive(Debug)]
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    /// Bytes claimed for forwarding so far, per direction.
    position: [u64; 2],
    /// Where a [`Fault::Flip`] counts from, per direction.
    flip_base: [u64; 2],
    /// Cut once this many bytes passed, while this generation's fault holds.
    cut_at: Option<(u64, u64)>,
    /// Cut: nothing more passes either way.
    cut: bool,
    pumps: u8,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A pump that panicked must not take the test's proxy with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        let handle = std::thread::spawn(work);
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|w| !w.is_finished());
        workers.push(handle);
    }
}

impl FaultProxy {
    /// Listens on a fresh loopback port and forwards to `target`, passing
    /// everything until a fault is set.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("set_nonblocking: {e}"));
        let shared = Arc::new(Shared {
            target,
            closing: AtomicBool::new(false),
            state: Mutex::new(State {
                fault: Fault::Pass,
                generation: 0,
                truncations_left: 0,
                flip_done: false,
                next_id: 0,
                conns: HashMap::new(),
                stats: Stats::default(),
            }),
            workers: Mutex::default(),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where to connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sets the fault from now on, in place of the last one.
    pub fn set(&self, fault: Fault) {
        let mut state = self.shared.state();
        state.generation += 1;
        state.flip_done = false;
        state.truncations_left = match fault {
            Fault::Truncate { connections, .. } => connections,
            _ => 0,
        };
        for conn in state.conns.values_mut() {
            conn.flip_base = conn.position;
        }
        if fault == Fault::Drop {
            for conn in state.conns.values() {
                conn.close();
            }
        }
        state.fault = fault;
    }

    /// Back to [`Fault::Pass`].
    pub fn clear(&self) {
        self.set(Fault::Pass);
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.shared.state().stats.accepted
    }

    /// Connections closed at once because [`Fault::Drop`] held, or because
    /// the target could not be reached.
    pub fn refused(&self) -> u64 {
        self.shared.state().stats.refused
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.state().conns.len()
    }

    /// Bytes let through `direction` so far (the last read may still be
    /// on its way), over every connection.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.shared.state().stats.forwarded[direction.index()]
    }

    /// Connections cut by [`Fault::Truncate`] so far.
    pub fn truncated(&self) -> u64 {
        self.shared.state().stats.truncated
    }

    /// Bits flipped by [`Fault::Flip`] so far.
    pub fn flipped(&self) -> u64 {
        self.shared.state().stats.flipped
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for conn in self.shared.state().conns.values() {
            conn.close();
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // A connection's first thread starts its second before it ends, so
        // a round that joins nothing new means none is left.
        loop {
            let workers = std::mem::take(
                &mut *self
                    .shared
                    .workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            if workers.is_empty() {
                break;
            }
            for worker in workers {
                let _ = worker.join();
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.closing() {
        match listener.accept() {
            Ok((client, _)) => admit(client, shared),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::sleep(POLL);
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Connects a new client to the target and starts its two pumps, unless
/// [`Fault::Drop`] holds.
fn admit(client: TcpStream, shared: &Arc<Shared>) {
    {
        let mut state = shared.state();
        state.stats.accepted += 1;
        if state.fault == Fault::Drop {
            state.stats.refused += 1;
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
    let serving = shared.clone();
    shared.spawn(move || serve(client, &serving));
}

/// Connects `client` to the target and carries its bytes both ways (the
/// way back on a thread of its own) until the connection ends.
fn serve(client: TcpStream, shared: &Arc<Shared>) {
    if shared.closing() {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_WITHIN) else {
        shared.state().stats.refused += 1;
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let handles = (|| {
        for s in [&client, &upstream] {
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(POLL))?;
            s.set_write_timeout(Some(POLL))?;
        }
        Ok::<_, std::io::Error>([
            client.try_clone()?,
            upstream.try_clone()?,
            client.try_clone()?,
            upstream.try_clone()?,
        ])
    })();
    let Ok([client_read, upstream_write, client_write, upstream_read]) = handles else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let id = {
        let mut state = shared.state();
        if state.fault == Fault::Drop {
            state.stats.refused += 1;
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        let cut_at = match state.fault {
            Fault::Truncate { after, .. } if state.truncations_left > 0 => {
                state.truncations_left -= 1;
                Some((after, state.generation))
            }
            _ => None,
        };
        state.conns.insert(
            id,
            Conn {
                client,
                upstream,
                position: [0, 0],
                flip_base: [0, 0],
                cut_at,
                cut: false,
                pumps: 2,
            },
        );
        id
    };
    let back = shared.clone();
    shared.spawn(move || {
        pump(
            &back,
            id,
            Direction::Downstream,
            upstream_read,
            client_write,
        )
    });
    pump(shared, id, Direction::Upstream, client_read, upstream_write);
}

/// What a pump may do with the bytes it holds, decided under the lock.
enum Step {
    /// Nothing now (a stall); look again after [`POLL`].
    Wait,
    /// The connection is to be closed now.
    Close,
    /// Forward the first `len` bytes after `delay`, this bit flipped (an
    /// index into them); close after them when `cut`.
    Forward {
        len: usize,
        delay: Option<Duration>,
        flip: Option<usize>,
        cut: bool,
    },
}

/// Carries one direction of one connection until either end closes, the
/// fault closes it, or the proxy goes away.
fn pump(shared: &Shared, id: u64, direction: Direction, mut from: TcpStream, mut to: TcpStream) {
    let d = direction.index();
    let mut buf = vec![0u8; READ_SIZE];
    let mut held = 0usize;
    let mut reached_end = false;
    loop {
        if shared.closing() {
            break;
        }
        if held == 0 {
            if shared.state().fault == Fault::Stall {
                std::thread::sleep(POLL);
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) => {
                    reached_end = true;
                    break;
                }
                Ok(n) => held = n,
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
            // The fault is looked at again before these bytes go anywhere.
            continue;
        }
        match step(shared, id, d, held) {
            Step::Wait => std::thread::sleep(POLL),
            Step::Close => break,
            Step::Forward {
                len,
                delay,
                flip,
                cut,
            } => {
                if let Some(delay) = delay {
                    sleep_unless_closing(shared, delay);
                }
                if let Some(i) = flip {
                    buf[i] ^= 0x10;
                }
                if !write_all(shared, &mut to, &buf[..len]) || cut {
                    break;
                }
                held = 0;
            }
        }
    }
    let mut state = shared.state();
    let last = match state.conns.get_mut(&id) {
        Some(conn) if reached_end && conn.pumps > 1 => {
            // A clean end one way: pass the close on, let the other way finish.
            let _ = to.shutdown(Shutdown::Write);
            conn.pumps -= 1;
            false
        }
        Some(conn) => {
            conn.close();
            conn.pumps = conn.pumps.saturating_sub(1);
            conn.pumps == 0
        }
        None => false,
    };
    if last {
        state.conns.remove(&id);
    }
}

/// Decides, under the lock, what becomes of `held` bytes going `d`, and
/// claims the ones to forward.
fn step(shared: &Shared, id: u64, d: usize, held: usize) -> Step {
    let mut state = shared.state();
    let state = &mut *state;
    let fault = state.fault.clone();
    let Some(conn) = state.conns.get_mut(&id) else {
        return Step::Close;
    };
    if conn.cut {
        return Step::Close;
    }
    let mut len = held;
    let mut cut = false;
    let mut flip = None;
    let mut delay = None;
    match fault {
        Fault::Pass => {}
        Fault::Drop => return Step::Close,
        Fault::Stall => return Step::Wait,
        Fault::Delay(wait) => delay = Some(wait),
        Fault::Truncate { .. } => {
            if let Some((after, generation)) = conn.cut_at
                && generation == state.generation
            {
                let passed = conn.position[0] + conn.position[1];
                let room = after.saturating_sub(passed);
                if room <= held as u64 {
                    len = room as usize;
                    cut = true;
                    conn.cut = true;
                    state.stats.truncated += 1;
                }
            }
        }
        Fault::Flip { direction, offset } => {
            if direction.index() == d && !state.flip_done {
                let at = conn.flip_base[d] + offset;
                let start = conn.position[d];
                if (start..start + held as u64).contains(&at) {
                    flip = Some((at - start) as usize);
                    state.flip_done = true;
                    state.stats.flipped += 1;
                }
            }
        }
    }
    conn.position[d] += len as u64;
    state.stats.forwarded[d] += len as u64;
    Step::Forward {
        len,
        delay,
        flip,
        cut,
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Writes all of `bytes`, giving up only when the peer fails or the proxy
/// goes away; false then.
fn write_all(shared: &Shared, to: &mut TcpStream, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if shared.closing() {
            return false;
        }
        match to.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn sleep_unless_closing(shared: &Shared, wait: Duration) {
    let until = Instant::now() + wait;
    loop {
        let now = Instant::now();
        if now >= until || shared.closing() {
            return;
        }
        std::thread::sleep((until - now).min(POLL));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::wait_until;

    const LIMIT: Duration = Duration::from_secs(20);

    /// A target that echoes every byte back, on every connection, until
    /// dropped.
    struct Echo {
        addr: SocketAddr,
        closing: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let closing = Arc::new(AtomicBool::new(false));
            let flag = closing.clone();
            let thread = std::thread::spawn(move || {
                let mut workers = Vec::new();
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            let flag = flag.clone();
                            workers.push(std::thread::spawn(move || {
                                s.set_nonblocking(false).unwrap();
                                s.set_read_timeout(Some(POLL)).unwrap();
                                let mut buf = [0u8; 4096];
                                while !flag.load(Ordering::SeqCst) {
                                    match s.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            if s.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                        Err(e) if is_timeout(&e) => {}
                                        Err(_) => break,
                                    }
                                }
                            }));
                        }
                        Err(_) => std::thread::sleep(POLL),
                    }
                }
                for w in workers {
                    w.join().unwrap();
                }
            });
            Echo {
                addr,
                closing,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.closing.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn connect(proxy: &FaultProxy) -> TcpStream {
        let s = TcpStream::connect(proxy.addr()).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Sends `bytes` and reads back as many (or up to the end).
    fn round_trip(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
        let mut writer = s.try_clone().unwrap();
        let owned = bytes.to_vec();
        let sender = std::thread::spawn(move || writer.write_all(&owned));
        let mut back = Vec::new();
        let mut buf = [0u8; 8192];
        while back.len() < bytes.len() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => back.extend_from_slice(&buf[..n]),
            }
        }
        let _ = sender.join().unwrap();
        back
    }

    /// Whether the peer closed: a read ends (EOF or reset) within the limit.
    fn closed(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 1];
        match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !is_timeout(&e),
        }
    }

    #[test]
    fn passes_and_delays_bytes_unchanged_both_ways() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let mut s = connect(&proxy);
        let sent = data(300_000);
        assert_eq!(round_trip(&mut s, &sent), sent);
        proxy.set(Fault::Delay(Duration::from_millis(5)));
        assert_eq!(round_trip(&mut s, &sent[..20_000]), sent[..20_000]);
        assert_eq!(proxy.forwarded(Direction::Upstream), 320_000);
        assert_eq!(proxy.forwarded(Direction::Downstream), 320_000);
        assert_eq!(proxy.accepted(), 1);
    }

    #[test]
    fn drop_closes_open_connections_and_refuses_new_ones_until_cleared() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let mut before = connect(&proxy);
        assert_eq!(round_trip(&mut before, b"hello"), b"hello");
        proxy.set(Fault::Drop);
        assert!(closed(&mut before), "an open connection is closed");
        let mut during = connect(&proxy);
        assert!(closed(&mut during), "a new connection is closed at once");
        wait_until(LIMIT, "the connections to be gone", || proxy.open() == 0);
        assert!(proxy.refused() >= 1);
        proxy.clear();
        let mut after = connect(&proxy);
        assert_eq!(round_trip(&mut after, b"again"), b"again");
    }

    #[test]
    fn stall_holds_bytes_and_keeps_connections_until_cleared() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let mut s = connect(&proxy);
        assert_eq!(round_trip(&mut s, b"first"), b"first");
        proxy.set(Fault::Stall);
        s.write_all(b"held").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Err(ref e) if is_timeout(e)),
            "nothing passes a stall: {r:?}"
        );
        assert_eq!(proxy.open(), 1, "the connection stays open");
        assert_eq!(proxy.forwarded(Direction::Upstream), 5);
        proxy.clear();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"held");
    }

    #[test]
    fn truncate_cuts_the_chosen_connections_after_n_bytes_only() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let mut open_before = connect(&proxy);
        assert_eq!(round_trip(&mut open_before, b"x"), b"x");
        proxy.set(Fault::Truncate {
            after: 1000,
            connections: 1,
        });
        let mut cut = connect(&proxy);
        let sent = data(5000);
        // 1000 bytes pass in all: what went up and what came back.
        let back = round_trip(&mut cut, &sent);
        assert!(back.len() < 1000, "{} bytes came back", back.len());
        assert_eq!(back, sent[..back.len()]);
        assert_eq!(proxy.truncated(), 1);
        // The next connection, and the one open before, pass.
        let mut next = connect(&proxy);
        assert_eq!(round_trip(&mut next, &sent), sent);
        assert_eq!(round_trip(&mut open_before, &sent), sent);
        assert_eq!(proxy.truncated(), 1);
    }

    #[test]
    fn flip_changes_one_bit_at_the_offset_once() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let mut s = connect(&proxy);
        let warm = data(100);
        assert_eq!(round_trip(&mut s, &warm), warm);
        // On an open connection the offset counts from now.
        proxy.set(Fault::Flip {
            direction: Direction::Downstream,
            offset: 1234,
        });
        let sent = data(200_000);
        let back = round_trip(&mut s, &sent);
        assert_eq!(back.len(), sent.len());
        let differ: Vec<usize> = (0..sent.len()).filter(|&i| back[i] != sent[i]).collect();
        assert_eq!(differ, vec![1234]);
        assert_eq!((back[1234] ^ sent[1234]).count_ones(), 1);
        assert_eq!(proxy.flipped(), 1);
        // Once: a new connection passes unchanged.
        let mut again = connect(&proxy);
        assert_eq!(round_trip(&mut again, &sent), sent);
        // Upstream, on a new connection, from its start.
        proxy.set(Fault::Flip {
            direction: Direction::Upstream,
            offset: 7,
        });
        let mut fresh = connect(&proxy);
        let back = round_trip(&mut fresh, &sent[..100]);
        let differ: Vec<usize> = (0..100).filter(|&i| back[i] != sent[i]).collect();
        assert_eq!(differ, vec![7]);
        assert_eq!(proxy.flipped(), 2);
    }

    #[test]
    fn dropping_the_proxy_closes_its_connections_and_ends_its_threads() {
        let echo = Echo::start();
        let proxy = FaultProxy::start(echo.addr);
        let addr = proxy.addr();
        let mut s = connect(&proxy);
        assert_eq!(round_trip(&mut s, b"hi"), b"hi");
        proxy.set(Fault::Stall);
        drop(proxy);
        assert!(closed(&mut s));
        assert!(
            TcpStream::connect(addr).is_err(),
            "nothing listens any more"
        );
    }
}
