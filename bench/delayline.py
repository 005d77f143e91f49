#!/usr/bin/env python3
"""A delay line on loopback: a bounded user-space TCP forwarder that makes
127.0.0.x look like a far-away, capped network path (this kernel has no netem).

  delayline.py --listen 127.0.0.2:2223 --to 127.0.0.1:2222 --delay-ms 25 --rate 1G
  delayline.py --listen 127.0.0.2:50000-50019 --to 127.0.0.1:50000-50019 ...
  delayline.py --self-test

What each forwarded connection sees, per direction:
  * latency: a byte is written out `delay` after the line read it (plus the
    time it waits for the link), so a ping-pong costs 2 x delay;
  * a link: ONE bandwidth cap per direction shared by every connection of the
    process (a link clock: a byte leaves when the link is free, a token
    bucket with no burst), not a cap per connection;
  * a TCP window: at most `window` bytes of a connection's direction in
    flight; a byte's credit comes back `delay` after it was written out (its
    ack crosses the reverse path), i.e. about 2 x delay after it was read.
    So one stream gets at most window/RTT and filling the link takes
    parallel streams, as on a long fat network.
Half-close is passed on (EOF after what was read has been delivered), a reset
is passed on as a reset (after `delay`), and the line refuses to listen on or
connect to anything but loopback addresses. Memory is bounded: about
2 x window per connection, at most --max-conns connections (more are reset).

Limits: it is Python in one thread; its own ceiling (printed by --self-test,
"line alone") bounds what it can carry, whatever --rate says. It does not
drop, reorder or model slow start or loss.
"""
import argparse
import asyncio
import collections
import ipaddress
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

EOF = object()


def parse_rate(text):
    """'1G' -> bytes/s of a 1 Gbit/s link; '0' -> no cap."""
    t = text.strip()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(t[-1:].upper(), 1)
    num = t[:-1] if mult > 1 else t
    try:
        bits = float(num) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rate wants bits per second such as 1G, 500M or 0 (no cap), got {text!r}")
    if bits < 0:
        raise argparse.ArgumentTypeError(f"--rate must not be negative, got {text!r}")
    return bits / 8


def parse_size(text):
    t = text.strip()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:].upper(), 1)
    try:
        n = int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window wants a size such as 4M or 512K, got {text!r}")
    if n < 1024:
        raise argparse.ArgumentTypeError(f"--window must be at least 1K, got {text!r}")
    return n


def parse_endpoint(text, what):
    """'127.0.0.2:2223' or '127.0.0.2:50000-50019' or '[::1]:5000' -> (host, [ports])."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        ports = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, ports = text.rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
        if "-" in ports:
            a, b = (int(p) for p in ports.split("-", 1))
        else:
            a = b = int(ports)
    except ValueError:
        raise SystemExit(f"delayline: {what} must be IP:PORT or IP:FIRST-LAST, got {text!r}")
    if not ip.is_loopback:
        raise SystemExit(f"delayline: {what} {host} is not a loopback address; the line only joins loopback addresses (127.0.0.0/8, ::1)")
    if not (0 < a <= b < 65536) or b - a > 1000:
        raise SystemExit(f"delayline: {what} port range {ports!r} must be 1-65535, FIRST <= LAST, at most 1001 ports")
    return host, list(range(a, b + 1))


class Link:
    """One direction of the emulated link: a byte leaves when the link is free."""

    def __init__(self, rate):
        self.rate = rate
        self.free_at = 0.0

    def send(self, now, n):
        if not self.rate:
            return now
        self.free_at = max(now, self.free_at) + n / self.rate
        return self.free_at


class Half:
    """One direction of one connection: reads from `src`, writes to `dst`."""

    def __init__(self, conn, link):
        self.conn, self.link = conn, link
        self.src = self.dst = None
        self.queue = collections.deque()
        self.in_flight = 0
        self.paused_src = False
        self.dst_blocked = False
        self.timer = None
        self.last_at = 0.0
        self.done = False

    def on_data(self, data):
        cfg = self.conn.cfg
        now = self.conn.loop.time()
        self.in_flight += len(data)
        at = max(self.link.send(now, len(data)) + cfg.delay, self.last_at)
        self.last_at = at
        self.queue.append((at, data))
        if self.in_flight >= cfg.window and not self.paused_src:
            self.paused_src = True
            self.src.pause_reading()
        self.arm()

    def on_eof(self):
        at = max(self.conn.loop.time() + self.conn.cfg.delay, self.last_at)
        self.last_at = at
        self.queue.append((at, EOF))
        self.arm()

    def arm(self):
        if self.timer is None and self.queue and not self.dst_blocked:
            self.timer = self.conn.loop.call_at(self.queue[0][0], self.flush)

    def flush(self):
        self.timer = None
        loop, delay = self.conn.loop, self.conn.cfg.delay
        now = loop.time()
        while self.queue and self.queue[0][0] <= now and not self.dst_blocked:
            _, data = self.queue.popleft()
            if data is EOF:
                self.done = True
                if self.dst.can_write_eof():
                    self.dst.write_eof()
                self.conn.half_done()
                return
            self.dst.write(data)
            # the ack of these bytes crosses the reverse path
            loop.call_at(now + delay, self.release, len(data))
        self.arm()

    def release(self, n):
        self.in_flight -= n
        if self.paused_src and self.in_flight < self.conn.cfg.window and not self.conn.closed:
            self.paused_src = False
            self.src.resume_reading()

    def blocked(self, yes):
        self.dst_blocked = yes
        if not yes:
            self.flush()
        elif self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Side(asyncio.Protocol):
    """One socket of a forwarded connection; `conn` wires the two halves."""

    def __init__(self, conn, name):
        self.conn, self.name = conn, name
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.conn.side_made(self)

    def data_received(self, data):
        self.conn.inbound(self).on_data(data)

    def eof_received(self):
        self.conn.inbound(self).on_eof()
        return True  # keep the write side open: a half-close

    def pause_writing(self):
        self.conn.outbound(self).blocked(True)

    def resume_writing(self):
        self.conn.outbound(self).blocked(False)

    def connection_lost(self, exc):
        self.conn.lost(self, exc)


class Conn:
    live = 0

    def __init__(self, cfg, target, up_link, down_link):
        self.cfg, self.target = cfg, target
        self.loop = asyncio.get_running_loop()
        self.client = Side(self, "client")
        self.server = None
        self.up = Half(self, up_link)      # client -> server
        self.down = Half(self, down_link)  # server -> client
        self.closed = False

    def side_made(self, side):
        if side is self.client:
            if Conn.live >= self.cfg.max_conns:
                print(f"delayline: {Conn.live} connections open (--max-conns); resetting a new one", file=sys.stderr)
                reset(side.transport)
                self.closed = True
                return
            Conn.live += 1
            side.transport.pause_reading()
            self.loop.create_task(self.connect())

    async def connect(self):
        try:
            _, server = await self.loop.create_connection(lambda: Side(self, "server"), *self.target)
        except OSError as e:
            print(f"delayline: cannot reach {self.target[0]}:{self.target[1]}: {e}", file=sys.stderr)
            self.reset_both()
            return
        self.server = server
        nodelay(self.client.transport)
        nodelay(server.transport)
        self.up.src, self.up.dst = self.client.transport, server.transport
        self.down.src, self.down.dst = server.transport, self.client.transport
        if not self.closed:
            self.client.transport.resume_reading()

    def inbound(self, side):
        return self.up if side is self.client else self.down

    def outbound(self, side):
        return self.down if side is self.client else self.up

    def half_done(self):
        if self.up.done and self.down.done:
            self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            Conn.live -= 1
            for s in (self.client, self.server):
                if s is not None and s.transport is not None:
                    s.transport.close()

    def lost(self, side, exc):
        # Only our own close() ends a socket cleanly (EOF keeps it half-open),
        # so anything else is a reset: it reaches the other end after the delay.
        if not self.closed and exc is not None:
            self.loop.call_later(self.cfg.delay, self.reset_both)

    def reset_both(self):
        if not self.closed:
            self.closed = True
            Conn.live -= 1
        for s in (self.client, self.server):
            if s is not None and s.transport is not None:
                reset(s.transport)


def nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


async def serve(cfg, pairs):
    loop = asyncio.get_running_loop()
    up, down = Link(cfg.rate), Link(cfg.rate)
    servers = []
    for (lhost, lports), (thost, tports) in pairs:
        for lp, tp in zip(lports, tports):
            target = (thost, tp)

            def factory(target=target):
                return Conn(cfg, target, up, down).client

            try:
                servers.append(await loop.create_server(factory, lhost, lp, reuse_address=True, backlog=128))
            except OSError as e:
                raise SystemExit(f"delayline: cannot listen on {lhost}:{lp}: {e}")
    if cfg.ready:
        print("ready", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    for s in servers:
        s.close()


# ------------------------------------------------------------------ self-test

def free_port(host):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_line(target_port, delay_ms, rate, window):
    port = free_port("127.0.0.2")
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--listen", f"127.0.0.2:{port}",
                          "--to", f"127.0.0.1:{target_port}", "--delay-ms", str(delay_ms),
                          "--rate", rate, "--window", window, "--ready"], stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("delayline self-test: the line did not start")
    return p, port


def listener(handler):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def run():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=run, daemon=True).start()
    return srv


def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(65536)
        if not b:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(b)


def ping(line_port, n=10):
    c = socket.create_connection(("127.0.0.2", line_port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(n):
        t = time.monotonic()
        c.sendall(b"x")
        if c.recv(1) != b"x":
            raise SystemExit("delayline self-test: echo lost a byte")
        rtts.append(time.monotonic() - t)
    c.shutdown(socket.SHUT_WR)
    eof = c.recv(1) == b""
    c.close()
    return statistics.median(rtts), eof


def bulk(line_port, streams, seconds, sink_counts):
    """Sends for `seconds` on `streams` connections; returns bytes/s the sink got."""
    sink_counts.clear()
    stop = time.monotonic() + seconds
    buf = b"\0" * (256 << 10)

    def send():
        c = socket.create_connection(("127.0.0.2", line_port))
        while time.monotonic() < stop:
            c.sendall(buf)
        c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=send) for _ in range(streams)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    got = sum(sink_counts)
    elapsed = time.monotonic() - t0
    return got / elapsed


def self_test():
    counts = []

    def sink(c):
        i = len(counts)
        counts.append(0)
        while True:
            b = c.recv(1 << 20)
            if not b:
                return
            counts[i] += len(b)

    echo_srv, sink_srv = listener(echo), listener(sink)
    ok = True

    def check(name, value, lo, hi, unit, scale):
        nonlocal ok
        good = lo <= value <= hi
        ok &= good
        print(f"  {name:<44} {value / scale:9.1f} {unit}  (expect {lo / scale:.1f}..{hi / scale:.1f}) {'ok' if good else 'OFF'}")

    delay, rate, window = 25, "400M", "1M"
    cap, win, rtt = 400e6 / 8, 1 << 20, 2 * delay / 1000
    print(f"delay line self-test: --delay-ms {delay} --rate {rate} (= {cap / 1e6:.0f} MB/s) --window {window}")
    line, port = start_line(echo_srv.getsockname()[1], delay, rate, window)
    try:
        r, eof = ping(port)
        check("1-byte ping-pong RTT (median of 10)", r, rtt, rtt * 1.4, "ms", 1e-3)
        ok &= eof
        print(f"  {'half-close passed on':<44} {'yes' if eof else 'NO'}")
    finally:
        line.terminate(); line.wait()
    line, port = start_line(sink_srv.getsockname()[1], delay, rate, window)
    try:
        one = min(cap, win / rtt)
        check("1 stream (window/RTT bound)", bulk(port, 1, 3, counts), 0.6 * one, 1.1 * one, "MB/s", 1e6)
        check("4 streams (link cap bound)", bulk(port, 4, 3, counts), 0.8 * cap, 1.05 * cap, "MB/s", 1e6)
    finally:
        line.terminate(); line.wait()
    line, port = start_line(sink_srv.getsockname()[1], 0, "0", "64M")
    try:
        ceil = bulk(port, 4, 3, counts)
        print(f"  {'line alone (no delay, no cap), 4 streams':<44} {ceil / 1e6:9.1f} MB/s  = {ceil * 8 / 1e9:.2f} Gbit/s: its ceiling here")
    finally:
        line.terminate(); line.wait()
    print("self-test", "passed" if ok else "FAILED (timing on a busy machine is loose; look at the figures)")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Adds a delay each way, caps bandwidth on one shared link per direction, "
        "and bounds each connection's bytes in flight like a TCP window.",
        epilog="Example: delayline.py --listen 127.0.0.2:2223 --to 127.0.0.1:2222 --delay-ms 25 --rate 1G --window 4M "
        "(RTT 50 ms, 125 MB/s link, one stream at most 4 MiB/50 ms = 84 MB/s). Stop it with SIGTERM.",
    )
    ap.add_argument("--listen", action="append", default=[], metavar="IP:PORT[-LAST]",
                    help="loopback address to accept on; repeat with --to for several pairs; a port range maps 1:1 onto --to's")
    ap.add_argument("--to", action="append", default=[], metavar="IP:PORT[-LAST]",
                    help="loopback address to forward the matching --listen to")
    ap.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay in ms (default 25: RTT 50 ms)")
    ap.add_argument("--rate", type=parse_rate, default=parse_rate("1G"),
                    help="link cap in bits/s per direction, shared by all connections: 1G = 125 MB/s (default), 0 = none")
    ap.add_argument("--window", type=parse_size, default=parse_size("4M"),
                    help="bytes in flight per connection and direction (default 4M): one stream gets at most WINDOW/RTT")
    ap.add_argument("--max-conns", type=int, default=128, help="connections at once (default 128); more are reset")
    ap.add_argument("--ready", action="store_true", help="print 'ready' on stdout once listening")
    ap.add_argument("--self-test", action="store_true",
                    help="measure a ping-pong RTT, 1 and 4 bulk streams through a line, and the line's own ceiling")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.listen or len(a.listen) != len(a.to):
        ap.error("give one --to for each --listen (at least one pair)")
    pairs = []
    for lt, tt in zip(a.listen, a.to):
        l, t = parse_endpoint(lt, "--listen"), parse_endpoint(tt, "--to")
        if len(l[1]) != len(t[1]):
            ap.error(f"--listen {lt} and --to {tt} have port ranges of different lengths")
        pairs.append((l, t))
    a.delay = a.delay_ms / 1000
    if a.delay < 0 or a.delay > 10:
        ap.error("--delay-ms must be between 0 and 10000")
    asyncio.run(serve(a, pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
