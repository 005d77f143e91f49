#!/usr/bin/env python3
"""Writes the seed corpus: a handful of valid inputs per fuzz target, in
fuzz/corpus/<target>/. Run from anywhere; it replaces those directories.

Each target's input format is described at the top of its file in
fuzz_targets/. The JSON here follows ferry-proto's serde spellings; if a
wire type changes, change it here too and run this again.
"""
import base64
import json
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def j(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def frame(body: bytes) -> bytes:
    """A control / local API frame: u32 length, body."""
    return struct.pack(">I", len(body)) + body


def data_message(body: bytes) -> bytes:
    """A data channel message frame: u32 length, type 1, JSON."""
    return struct.pack(">I", len(body) + 1) + b"\x01" + body


def data_chunk(file: int, index: int, data: bytes) -> bytes:
    header = struct.pack(">QI", file, index) + bytes(range(32))
    return struct.pack(">I", 1 + len(header) + len(data)) + b"\x02" + header + data


COUNTERS = {"files": 2, "files_transferred": 1, "files_skipped": 1, "bytes_transferred": 5}
ENTRIES = [
    {"id": 1, "item": 0, "path": "", "kind": "dir", "size": 0, "mtime_ns": 0, "mode": 0o755},
    {"id": 2, "item": 0, "path": "run 1/a.h5", "kind": "file", "size": 5,
     "mtime_ns": 1700000000123456789, "mode": 0o644},
    {"id": 3, "item": 1, "path": "odd%FFname/100%25", "kind": "file", "size": 0,
     "mtime_ns": -5, "mode": 0o600},
]
CAPABILITY = {
    "task_id": "4f1c2d3e-0000-4000-8000-000000000001",
    "attempt": 1,
    "source_endpoint": "src-endpoint",
    "destination_endpoint": "dst-endpoint",
    "items": [{"source": "/~/data", "destination": "/scratch/run7", "recursive": True},
              {"source": "/data/b%FF", "destination": "/~/in/b", "recursive": False}],
    "options": {"sync_level": "checksum", "delete": True, "preserve_mtime": True,
                "preserve_mode": False, "skip_source_errors": False, "streams": 4},
    "issued": 1764400000,
    "expires": 1764403600,
}
DATA_MESSAGES = {
    "open": {"type": "open", "capability": b64(j(CAPABILITY)) + "." + b64(b"\x30\x06sig"),
             "stream": 0, "streams": 4},
    "accepted": {"type": "accepted"},
    "refused": {"type": "refused", "reason": "capability expired"},
    "manifest": {"type": "manifest", "entries": ENTRIES},
    "needs": {"type": "needs", "needs": [
        [1, {"need": "skip"}],
        [2, {"need": "send", "missing": "all"}],
        [3, {"need": "send", "missing": {"only": [0, 2, 2]}}],
        [4, {"need": "send_unless_digest", "digest": "ab" * 32}]]},
    "unchanged": {"type": "unchanged", "id": 2},
    "file_done": {"type": "file_done", "id": 2, "digest": "cd" * 32},
    "file_changed": {"type": "file_changed", "id": 3},
    "end": {"type": "end", "files": 2},
    "done": {"type": "done", "counters": COUNTERS},
    "abort": {"type": "abort", "reason": "fatal: disk full"},
}

HELLO = {"type": "hello", "version": 1, "min_version": 1, "software": "ferry 0.1.0",
         "data_address": "127.0.0.1:7000"}
FS_OUTCOME = {"result": "listing", "entries": [
    {"name": "a%FFb", "type": "file", "size": 3, "mtime": 1, "mode": 0o644},
    {"name": "sub", "type": "dir", "size": 0, "mtime": -1, "mode": 0o755}], "truncated": False}
TASK_REPORT = {"kind": "progress", "counters": COUNTERS}
WELCOME = {"type": "welcome", "version": 1, "endpoint_id": "ep-1", "heartbeat_secs": 15,
           "capability_key": b64(b"\x04" + bytes(64)), "revoked_endpoints": ["gone-1"]}


def lines(*parts) -> bytes:
    return b"\n".join(p if isinstance(p, bytes) else j(p) for p in parts)


SEEDS = {
    "frame": {
        "control_two": b"\x00\x00" + frame(j({"type": "ping", "seq": 1})) + frame(j(HELLO)),
        "local_split": b"\x01\x02\x01\x03" + frame(j({"v": 1, "op": "status"})) * 2,
        "small_max": b"\x05\x01\x02" + frame(b"abc") + frame(b"abcdef") + frame(b"x"),
        "too_large": b"\x05\x00" + frame(b"abc") + struct.pack(">I", 7) + b"abcdefg",
        "empty": b"\x07\x00" + frame(b"ab") + b"\x00\x00\x00\x00",
        "partial": b"\x00\x01\x05" + frame(b"hello")[:7],
    },
    "control": {
        "hub_session": b"\x00" + lines(
            HELLO, b"!a15",
            {"type": "ping", "seq": 7},
            {"type": "fs_reply", "id": 1, "outcome": FS_OUTCOME},
            {"type": "task_report", "task_id": "t1", "attempt": 2, "report": TASK_REPORT},
            {"type": "task_report", "task_id": "t1", "attempt": 2,
             "report": {"kind": "skipped", "path": "/~/x%FF", "reason": "a FIFO"}},
            {"type": "renew_certificate", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n"},
            b"!q", b"!t15", {"type": "pong", "seq": 1}, b"!t15", b"!t60"),
        "hub_old_peer": b"\x00" + lines({"type": "hello", "version": 0, "min_version": 0,
                                         "software": "old"}),
        "hub_early": b"\x00" + lines({"type": "ping", "seq": 1}),
        "hub_refuse": b"\x00" + lines(HELLO, b"!r", b"!t1", {"type": "ping", "seq": 1}),
        "hub_silence": b"\x00" + lines(b"!t10", b"!t25"),
        "hub_raw": b"\x00!x" + frame(j(HELLO)) + frame(j({"type": "ping", "seq": 2})),
        "endpoint_session": b"\x01" + lines(
            WELCOME,
            {"type": "ping", "seq": 3},
            {"type": "fs_request", "id": 4, "op": {"op": "list", "path": "/~/data"}},
            {"type": "fs_request", "id": 5, "op": {"op": "rename", "from": "/~/a", "to": "/~/b"}},
            {"type": "fs_request", "id": 6, "op": {"op": "remove", "path": "/x", "recursive": True}},
            {"type": "fs_request", "id": 7, "op": {"op": "mkdir", "path": "/~/n%25"}},
            {"type": "task_start", "capability": "e30.c2ln", "connect_to": "127.0.0.1:7001"},
            {"type": "task_cancel", "task_id": "t1", "through_attempt": 2},
            {"type": "task_cancel", "task_id": "t2"},
            {"type": "revoked", "endpoint_ids": ["gone-2"]},
            {"type": "certificate", "cert": "-----BEGIN CERTIFICATE-----\nMIIB\n"},
            {"type": "certificate", "refused": "the endpoint was revoked"},
            b"!a9", b"!t22", b"!t8", {"type": "pong", "seq": 1}, b"!t100"),
        "endpoint_refused": b"\x01" + lines({"type": "refuse", "reason": "superseded",
                                             "message": "set up on another machine"}),
        "endpoint_huge_beat": b"\x01" + lines(dict(WELCOME, heartbeat_secs=2**63), b"!t9999"),
        "endpoint_early": b"\x01" + lines({"type": "task_start", "capability": "c",
                                           "connect_to": "h:1"}),
        "endpoint_raw": b"\x01!x" + frame(j(WELCOME)) + frame(j({"type": "ping", "seq": 9})),
    },
    "data_frame": dict(
        {f"message_{k}": b"\x00" + data_message(j(v)) for k, v in DATA_MESSAGES.items()},
        chunks=b"\x00" + data_chunk(2, 0, b"hello") + data_chunk(2, 1, b"") +
        data_message(j(DATA_MESSAGES["file_done"])),
        chunk_short=b"\x00" + struct.pack(">I", 10) + b"\x02" + b"x" * 9,
        unknown_type=b"\x00" + struct.pack(">I", 3) + b"\x07ab",
        keep_alive=b"\x00" + bytes([0, 0, 0, 1, 3]) + data_message(j(DATA_MESSAGES["end"])),
        handshake_open=b"\x01\x00" + data_message(j(DATA_MESSAGES["open"])),
        handshake_budget=b"\x01\x08" + struct.pack(">I", 100 * 1024) + b"\x01{\"type\":",
        handshake_chunk=b"\x01\x00" + data_chunk(1, 0, b"early"),
        handshake_accepted=b"\x01\x00" + data_message(j(DATA_MESSAGES["accepted"])),
    ),
    "data_message": {k: j(v) for k, v in DATA_MESSAGES.items()},
    "config_paths": {
        "home_rules": b"\x00" + b"# the owner's rules\n~/,0,1\n/data/ro,1,0\n~/data/secret,0,0\n"
        b"  /data/a,b ,0, 1 \r\n~/.ferry/x,0,1\n\0/home/u/data/x\0/data/ro/../etc\0/home/u/.ssh/id"
        b"\0/home/u/.ferry/x/y\0relative",
        "root_home": b"\x02/,0,1\n/.ferry,0,1\n\0/.hidden\0/.ferry/k",
        "unicode": b"\x03~/r\xc3\xa9sultats,1,1\n/srv/./y//,0,0\n\0/home/a b/\xc3\xbc/r\xc3\xa9sultats",
        "bad_line": b"\x01~/,0,1\nfoo\n",
        "dotdot": b"\x00/data/../etc,0,1\n",
    },
    "restrict_paths": {
        "prefixes": b"\x00R~/data,N~/data/secret,W/scratch,RW/rw/,/plain\0/home/u/data/a"
        b"\0/home/u/data/secret/k\0/scratch/x\0/home/u/.ssh",
        "tilde": b"\x01 R~ , /x \0/home/u/y\0/etc/ferry/k",
        "root_home": b"\x02RW/\0/.ferry/x\0/a",
        "bad_prefix": b"\x00/a,X/b",
        "dotdot": b"\x03R~/../x",
    },
    "setup_key": {
        "key": b"\x00FSK1." + b64(b"https://hub.example.org:8443").encode() + b"." +
        b64(bytes(range(32))).encode() + b"." + b"x" * 43,
        "key_pasted": b"\x00  FSK1." + b64(b"https://[::1]:9000/api").encode() + b"." +
        b64(bytes([7] * 32)).encode() + b"." + b"Ab-_" * 11 + b"\n",
        "parts": b"\x01hub.example.org\0" + bytes(range(32)) + b"s3cr3t-" * 6,
        "parts_port": b"\x01127.0.0.1:8443/\0" + bytes([255] * 32) + b"_" * 32 + b"  ",
    },
    "capability": {
        "signed": b"\x01" + struct.pack(">qHB", 1764400000, 9, 3) + j(CAPABILITY),
        "signed_expired": b"\x01" + struct.pack(">qHB", 1764403601, 200, 64) + j(CAPABILITY),
        "signed_minimal": b"\x01" + struct.pack(">qHB", 0, 0, 0) +
        j(dict(CAPABILITY, items=[], options={})),
        "sealed": b"\x00" + (b64(j(CAPABILITY)) + "." + b64(b"\x30\x44" + bytes(68))).encode(),
        "hostile_key": b"\x02\x41\x04" + bytes(range(64)) +
        (b64(j(CAPABILITY)) + "." + b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")).encode(),
    },
    "wire_path": {
        "bytes": b"\x00/data/run 1/\xff\xfe%/\xc3\xa9.h5",
        "text": "\x01/data/a%FFb/100%25/é".encode(),
        "home": b"\x01/~/data/x",
        "tilde": b"\x00~/x",
        "bad_escape": b"\x01bad%zz",
    },
    "api_json": {
        "create_endpoint": b"\x00" + j({"display_name": "laptop"}),
        "register_endpoint": b"\x01" + j({"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n"
                                                     "-----END CERTIFICATE REQUEST-----\n",
                                          "display_name": "lab"}),
        "fs_op": b"\x02" + j({"op": "rename", "from": "/~/a%FF", "to": "/~/b"}),
        "submit_task": b"\x03" + j({"source_endpoint": "a", "destination_endpoint": "b",
                                    "items": CAPABILITY["items"], "options": {"sync_level": "mtime"},
                                    "label": "run 7", "deadline": 1764403600}),
        "transfer_item": b"\x04" + j(CAPABILITY["items"][0]),
        "transfer_options": b"\x05" + j(CAPABILITY["options"]),
        "filter_scope": b"\x06" + j("shared-with-me"),
        "api_error": b"\x07" + j({"error": "not_found", "message": "no such task"}),
        "oauth_error": b"\x08" + j({"error": "invalid_grant"}),
        "token": b"\x09" + j({"access_token": "at", "token_type": "Bearer", "expires_in": 3600,
                              "refresh_token": "rt", "scope": "transfer endpoint:setup"}),
        "created_endpoint": b"\x0a" + j({"id": "e", "display_name": "d", "setup_key": "FSK1.a.b.c"}),
        "registered_endpoint": b"\x0b" + j({"id": "e", "display_name": "d", "owner": "o",
                                            "cert_pem": "c", "endpoint_ca_pem": "ca"}),
        "endpoint_info": b"\x0c" + j({"id": "e", "display_name": "d", "owner": "o",
                                      "connected": True, "created": 1}),
        "fs_outcome": b"\x0d" + j(FS_OUTCOME),
        "submitted_task": b"\x0e" + j({"task_id": "t"}),
        "task_info": b"\x0f" + j({"task_id": "t", "status": "ACTIVE", "label": None,
                                  "source_endpoint": "a", "source_endpoint_name": "A",
                                  "destination_endpoint": "b", "destination_endpoint_name": "B",
                                  "files": 1, "files_transferred": 0, "files_skipped": 0,
                                  "bytes_transferred": 0, "faults": 1, "attempt": 2,
                                  "item_count": 1, "created": 1, "completed": None,
                                  "deadline": 5, "last_fault": "x", "fatal_error": None,
                                  "waiting_for": "endpoint b is offline"}),
        "task_events": b"\x10" + j([{"seq": 1, "time": 2, "code": "SUBMITTED", "is_error": False,
                                     "description": "submitted"}]),
        "task_report": b"\x11" + j({"kind": "resent", "path": "/x", "reason": "digest"}),
        "local_request": b"\x12" + j({"v": 1, "op": "reload"}),
        "local_response": b"\x13" + j({"v": 1, "result": "done", "message": "stopping"}),
        "local_old": b"\x12" + j({"v": 2, "op": "status"}),
    },
}


def main() -> None:
    for target, seeds in SEEDS.items():
        folder = os.path.join(ROOT, target)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
    total = sum(len(d) for s in SEEDS.values() for d in s.values())
    print(f"{sum(len(s) for s in SEEDS.values())} seeds, {total} bytes, in {ROOT}")


if __name__ == "__main__":
    main()
