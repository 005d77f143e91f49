#!/usr/bin/env python3
"""A delay line on loopback: a bounded user-space TCP forwarder that makes
127.0.0.x look like a far-away, capped network path (this kernel has no netem).

  delayline.py --listen 127.0.0.2:2223 --to 127.0.0.1:2222 --delay-ms 25 --rate 1G
  delayline.py --listen 127.0.0.2:50000-50019 --to 127.0.0.1:50000-50019 ...
  delayline.py --ftp-listen 127.0.0.2:2812 --ftp-to 127.0.0.1:2811 \
               --listen 127.0.0.2:50700-50739 --to 127.0.0.1:50600-50639 ...
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

FTP (GridFTP) control connections (--ftp-listen/--ftp-to) get one more
thing: the server's passive-mode replies (227 PASV, 229 EPSV, SPAS) that name
a port the line forwards (a --to) are rewritten to name the line's matching
--listen, so the data connections the client opens go through the line too.
The server binds its data ports on every interface, so the line cannot take
the same ports on 127.0.0.2; it listens on other ones and rewrites. Active
mode (PORT/SPOR/EPRT from the client, which GridFTP's parallel MODE E uses
for a download: the sender connects) gets a listener of the line's, named in
the rewritten command, that forwards to the client's port.

Limits: it is Python in one thread; its own ceiling (printed by --self-test,
"line alone") bounds what it can carry, whatever --rate says. It does not
drop, reorder or model slow start or loss.
"""
import argparse
import asyncio
import collections
import ipaddress
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

EOF = object()
PASV = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
EPSV = re.compile(rb"\(\|\|\|(\d+)\|\)")
EPRT = re.compile(rb"\|([12])\|([^|]+)\|(\d+)\|")
MAX_ACTIVE = 64  # active-mode data listeners one FTP control connection may hold


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
        self.bytes = 0

    def send(self, now, n):
        self.bytes += n
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
        # FTP control: "down" rewrites the server's passive replies (pasv maps
        # a --to port to its --listen), "up" the client's PORT/SPOR/EPRT.
        self.ftp = None
        self.pasv = {}
        self.partial = b""

    def rewrite(self, data):
        """Passive-mode replies name the line's ports instead of the server's."""
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < 65536:
            self.partial = data
            return b""
        lines, self.partial = data[:cut] or data, data[cut:] if cut else b""
        out = []
        for line in lines.splitlines(keepends=True):
            if self.ftp == "down":
                if line.startswith((b"227", b" ")):
                    line = PASV.sub(self.sub_pasv, line)
                elif line.startswith(b"229 "):
                    line = EPSV.sub(self.sub_epsv, line)
            elif line[:5].upper() in (b"PORT ", b"SPOR "):
                line = PASV.sub(self.sub_port, line)
            elif line[:5].upper() == b"EPRT ":
                line = EPRT.sub(self.sub_eprt, line)
            out.append(line)
        return b"".join(out)

    def sub_port(self, m):
        """Active mode: the server will connect to the client; make it connect to the line."""
        hit = self.conn.active(".".join(x.decode() for x in m.groups()[:4]), int(m[5]) * 256 + int(m[6]))
        if hit is None:
            return m[0]
        host, lp = hit
        return (host.replace(".", ",") + f",{lp >> 8},{lp & 255}").encode()

    def sub_eprt(self, m):
        hit = self.conn.active(m[2].decode(), int(m[3]))
        return m[0] if hit is None else f"|{m[1].decode()}|{hit[0]}|{hit[1]}|".encode()

    def sub_pasv(self, m):
        port = int(m[5]) * 256 + int(m[6])
        hit = self.pasv.get(port)
        if hit is None:
            return m[0]
        host, lp = hit
        return (host.replace(".", ",") + f",{lp >> 8},{lp & 255}").encode()

    def sub_epsv(self, m):
        hit = self.pasv.get(int(m[1]))
        return m[0] if hit is None else f"(|||{hit[1]}|)".encode()

    def on_data(self, data):
        if self.ftp is not None:
            data = self.rewrite(data)
            if not data:
                return
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
        if self.partial:
            self.ftp, data, self.partial = None, self.partial, b""
            self.on_data(data)
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

    def __init__(self, cfg, target, up_link, down_link, pasv=None, listen_host=None):
        self.cfg, self.target = cfg, target
        self.links, self.listen_host = (up_link, down_link), listen_host
        self.actives = collections.OrderedDict()  # (host, port) -> (listen port, server)
        self.loop = asyncio.get_running_loop()
        self.client = Side(self, "client")
        self.server = None
        self.up = Half(self, up_link)      # client -> server
        self.down = Half(self, down_link)  # server -> client
        self.closed = False
        if pasv is not None:
            self.up.ftp, self.down.ftp, self.down.pasv = "up", "down", pasv

    def active(self, host, port):
        """A listener on the line for an active-mode data connection to (host, port)."""
        try:
            if not ipaddress.ip_address(host).is_loopback or not 0 < port < 65536:
                return None
        except ValueError:
            return None
        key = (host, port)
        if key not in self.actives:
            sock = socket.socket(socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET)
            try:
                sock.bind((self.listen_host, 0))
                sock.listen(16)
            except OSError as e:
                sock.close()
                print(f"delayline: no port for an active-mode data connection: {e}", file=sys.stderr)
                return None
            sock.setblocking(False)
            up, down = self.links
            # the server connects and sends toward the client: that is the down link
            factory = lambda: Conn(self.cfg, key, down, up).client  # noqa: E731
            task = self.loop.create_task(self.loop.create_server(factory, sock=sock))
            self.actives[key] = (sock.getsockname()[1], task)
            while len(self.actives) > MAX_ACTIVE:
                self.drop_active(self.actives.popitem(last=False)[1])
        self.actives.move_to_end(key)
        return self.listen_host, self.actives[key][0]

    @staticmethod
    def drop_active(entry):
        task = entry[1]
        if task.done() and not task.cancelled() and task.exception() is None:
            task.result().close()
        else:
            task.add_done_callback(lambda t: t.cancelled() or t.exception() or t.result().close())

    def drop_actives(self):
        while self.actives:
            self.drop_active(self.actives.popitem()[1])

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
        self.drop_actives()
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
        self.drop_actives()
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


async def serve(cfg, pairs, ftp_pairs):
    loop = asyncio.get_running_loop()
    up, down = Link(cfg.rate), Link(cfg.rate)
    servers = []
    accepted = collections.Counter()
    pasv = {tp: (lhost, lp) for (lhost, lports), (_, tports) in pairs for lp, tp in zip(lports, tports)}
    for ftp, group in ((False, pairs), (True, ftp_pairs)):
        for (lhost, lports), (thost, tports) in group:
            for lp, tp in zip(lports, tports):
                target = (thost, tp)

                def factory(target=target, ftp=ftp, key=f"{lhost}:{lports[0]}", lhost=lhost):
                    accepted[key] += 1
                    return Conn(cfg, target, up, down, pasv if ftp else None, lhost).client

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
    # what went through, so a caller can tell its traffic took the line
    print(f"delayline: carried {up.bytes} bytes up, {down.bytes} down; connections by listen address"
          " (active-mode FTP data not counted): "
          + (", ".join(f"{k} {n}" for k, n in sorted(accepted.items())) or "none"), file=sys.stderr)


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
                          "--rate", rate, "--window", window, "--ready"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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


def rst(c):
    c.recv(1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def reset_seen(line_port):
    """The server resets after one byte: does the client see a reset too?"""
    c = socket.create_connection(("127.0.0.2", line_port))
    c.settimeout(5)
    c.sendall(b"x")
    try:
        return c.recv(1) == b"" and "EOF instead"
    except ConnectionResetError:
        return True
    except OSError as e:
        return str(e)
    finally:
        c.close()


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
    base = sum(sink_counts)
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
    got = sum(sink_counts) - base
    elapsed = time.monotonic() - t0
    time.sleep(1)  # what is still in the line lands before the next measurement starts
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

    echo_srv, sink_srv, rst_srv = listener(echo), listener(sink), listener(rst)
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
    line, port = start_line(rst_srv.getsockname()[1], delay, rate, window)
    try:
        seen = reset_seen(port)
        ok &= seen is True
        print(f"  {'reset passed on':<44} {'yes' if seen is True else 'NO: ' + str(seen)}")
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
    ap.add_argument("--ftp-listen", action="append", default=[], metavar="IP:PORT",
                    help="like --listen, for an FTP/GridFTP control port: passive-mode replies naming a --to port are "
                    "rewritten to the matching --listen port, so data connections go through the line")
    ap.add_argument("--ftp-to", action="append", default=[], metavar="IP:PORT",
                    help="the FTP server's control address for the matching --ftp-listen")
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
    if len(a.listen) != len(a.to) or len(a.ftp_listen) != len(a.ftp_to) or not a.listen + a.ftp_listen:
        ap.error("give one --to for each --listen and one --ftp-to for each --ftp-listen (at least one pair)")

    def pair_up(listens, tos, flag):
        out = []
        for lt, tt in zip(listens, tos):
            l, t = parse_endpoint(lt, f"--{flag}listen"), parse_endpoint(tt, f"--{flag}to")
            if len(l[1]) != len(t[1]):
                ap.error(f"--{flag}listen {lt} and --{flag}to {tt} have port ranges of different lengths")
            out.append((l, t))
        return out

    pairs, ftp_pairs = pair_up(a.listen, a.to, ""), pair_up(a.ftp_listen, a.ftp_to, "ftp-")
    a.delay = a.delay_ms / 1000
    if a.delay < 0 or a.delay > 10:
        ap.error("--delay-ms must be between 0 and 10000")
    asyncio.run(serve(a, pairs, ftp_pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
