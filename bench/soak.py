#!/usr/bin/env python3
"""A seeded kill -9 soak: a real hub and two endpoints on loopback; each run
makes a mixed dataset, submits it as a task, kills the source daemon, the
destination daemon or the hub with SIGKILL at a random moment, starts it
again, waits for the task to end, and checks the copy byte for byte (and
that no temporary file stands in it). The same SEED gives the same
datasets, victims and moments. Exit 1 if any run lost or corrupted a file
or did not succeed.

Usage: bench/soak.sh SEED RUNS   (see there)
"""

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CHUNK = 4 * 1024 * 1024
TASK_LIMIT_SECS = 300


def log(msg):
    print(msg, flush=True)


def run(args, env, check=True, timeout=120):
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {limit}s")


def make_dataset(rng, root):
    """Many small files, some mid-sized, now and then one over several
    chunks with a size on or next to a chunk boundary; nested directories."""
    os.makedirs(root)
    dirs = [root]
    for _ in range(rng.randint(1, 8)):
        parent = rng.choice(dirs)
        d = os.path.join(parent, f"d{len(dirs)}")
        os.makedirs(d)
        dirs.append(d)
    sizes = [rng.randint(0, 64 * 1024) for _ in range(rng.randint(20, 300))]
    sizes += [rng.randint(1, 12) * 1024 * 1024 + rng.randint(-1, 1) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.5:
        sizes.append(rng.randint(4, 12) * CHUNK + rng.choice([-1, 0, 1, 12345]))
    for i, size in enumerate(sizes):
        path = os.path.join(rng.choice(dirs), f"f{i}.bin")
        with open(path, "wb") as f:
            f.write(rng.randbytes(max(size, 0)))
    return len(sizes), sum(max(s, 0) for s in sizes)


def tree(root):
    """{relative path: sha256} of regular files, and the set of directories."""
    files, dirs = {}, set()
    for base, dnames, fnames in os.walk(root):
        rel = os.path.relpath(base, root)
        for d in dnames:
            dirs.add(os.path.normpath(os.path.join(rel, d)))
        for name in fnames:
            p = os.path.join(base, name)
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            files[os.path.normpath(os.path.join(rel, name))] = h.hexdigest()
    return files, dirs


class Lab:
    def __init__(self, bins, work):
        self.work = work
        self.port = free_port()
        self.env = dict(os.environ)
        self.env["PATH"] = bins + os.pathsep + self.env.get("PATH", "")
        self.env["HOME"] = os.path.join(work, "home")
        os.makedirs(self.env["HOME"])
        self.hub_dir = os.path.join(work, "hub")
        self.hub = None
        run(["ferry-hub", "init", "--dir", self.hub_dir, "--url", f"https://127.0.0.1:{self.port}"], self.env)
        subprocess.run(
            ["ferry-hub", "user", "add", "soak", "--password-stdin", "--dir", self.hub_dir],
            env=self.env, input="soak password 1\n", text=True, check=True, capture_output=True,
        )
        self.start_hub()
        self.eps = {}
        for name in ("src", "dst"):
            created = json.loads(run(["ferry-hub", "endpoint", "create", "--dir", self.hub_dir,
                                      "--owner", "soak", "--name", name, "--json"], self.env).stdout)
            d = os.path.join(work, f"ep-{name}")
            run(["ferry", "-setup", created["setup_key"], "--name", name, "-dir", d], self.env)
            self.eps[name] = d
            self.start_endpoint(name)
        self.env["FERRY_HUB"] = f"https://127.0.0.1:{self.port}"
        self.env["FERRY_HUB_CA"] = os.path.join(self.hub_dir, "ca.crt")
        self.env["FERRY_TOKEN"] = run(["ferry-hub", "token", "create", "--dir", self.hub_dir,
                                       "--user", "soak", "--expires", "86400"], self.env).stdout.strip()
        for name in self.eps:
            self.wait_connected(name)

    def start_hub(self):
        hub_log = open(os.path.join(self.work, "hub.log"), "ab")
        self.hub = subprocess.Popen(["ferry-hub", "serve", "--dir", self.hub_dir], env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=hub_log)
        wait_port(self.port)

    def start_endpoint(self, name):
        run(["ferry", "-start", "-detach", "-dir", self.eps[name]], self.env)

    def wait_connected(self, name, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            out = run(["ferry", "-status", "-dir", self.eps[name]], self.env, check=False)
            if "Hub: connected" in out.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not connect within {limit}s")

    def daemon_pid(self, name):
        out = run(["ferry", "-status", "--json", "-dir", self.eps[name]], self.env, check=False)
        try:
            return json.loads(out.stdout).get("pid")
        except ValueError:
            return None

    def kill(self, victim):
        if victim == "hub":
            self.hub.send_signal(signal.SIGKILL)
            self.hub.wait(timeout=30)
            return True
        pid = self.daemon_pid(victim)
        if not pid:
            return False
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline and self.daemon_pid(victim):
            time.sleep(0.05)
        return True

    def restart(self, victim):
        if victim == "hub":
            self.start_hub()
        else:
            self.start_endpoint(victim)

    def stop(self):
        for d in self.eps.values():
            run(["ferry", "-stop", "-dir", d], self.env, check=False)
        if self.hub and self.hub.poll() is None:
            self.hub.terminate()
            self.hub.wait(timeout=30)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: soak.py BIN_DIR SEED RUNS")
    bins, seed, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    work = tempfile.mkdtemp(prefix="ferry-soak.")
    lab = Lab(bins, work)
    home = lab.env["HOME"]
    os.makedirs(os.path.join(home, "copy"))
    failures, corrupt, lost, leftovers, mid_kills = [], 0, 0, 0, 0
    started = time.time()
    try:
        for i in range(runs):
            rng = random.Random(seed * 1_000_003 + i)
            src = os.path.join(home, "data", f"run{i}")
            dst = os.path.join(home, "copy", f"run{i}")
            files, size = make_dataset(rng, src)
            victim = rng.choice(["src", "dst", "hub", "src", "dst", "hub", None])
            delay = rng.uniform(0.05, 1.5)
            submitted = json.loads(run(["ferry", "transfer", "-r", f"src:/~/data/run{i}",
                                        f"dst:/~/copy/run{i}", "--label", f"soak {seed}/{i}",
                                        "--json"], lab.env).stdout)
            task = submitted["task_id"]
            killed, mid_task = False, False
            if victim:
                time.sleep(delay)
                killed = lab.kill(victim)
                time.sleep(rng.uniform(0.1, 1.0))
                lab.restart(victim)
                shown = run(["ferry", "task", "show", task, "--json"], lab.env, check=False)
                try:
                    mid_task = json.loads(shown.stdout).get("status") == "ACTIVE"
                except ValueError:
                    mid_task = False
                mid_kills += int(killed and mid_task)
            waited = run(["ferry", "task", "wait", task, "--timeout", str(TASK_LIMIT_SECS)],
                         lab.env, check=False, timeout=TASK_LIMIT_SECS + 30)
            want_files, want_dirs = tree(src)
            got_files, got_dirs = tree(dst) if os.path.isdir(dst) else ({}, set())
            temps = [p for p in got_files if os.path.basename(p).startswith(".ferry.")]
            bad = [p for p, h in want_files.items() if p in got_files and got_files[p] != h]
            missing = [p for p in want_files if p not in got_files]
            extra = [p for p in got_files if p not in want_files and p not in temps]
            corrupt += len(bad) + len(extra)
            lost += len(missing)
            leftovers += len(temps)
            ok = waited.returncode == 0 and not bad and not missing and not extra and not temps \
                and want_dirs <= got_dirs
            what = (f"kill -9 {victim} at {delay:.2f}s" + (" (mid-task)" if mid_task else "")
                    if killed else "no kill")
            log(f"run {i:3d}: {files:4d} files {size / 1e6:7.1f} MB  {what:36s} "
                f"{'ok' if ok else 'FAILED'}"
                + ("" if ok else f"  (task exit {waited.returncode}: {waited.stderr.strip()[:200]}; "
                   f"corrupt {len(bad)}, missing {len(missing)}, extra {len(extra)}, temps {len(temps)})"))
            if not ok:
                failures.append(i)
            shutil.rmtree(src)
            shutil.rmtree(dst, ignore_errors=True)
    finally:
        lab.stop()
    log(f"seed {seed}: {runs} runs in {time.time() - started:.0f}s; {runs - len(failures)} ok; "
        f"{mid_kills} kills landed mid-task; "
        f"corrupt files {corrupt}, lost files {lost}, temporaries left {leftovers}; "
        f"failed runs {failures or 'none'}")
    if failures:
        log(f"work dir kept for inspection: {work}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
