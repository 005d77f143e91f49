"""Transfers through the SDK between two real endpoints: every option
travels, the bytes land, the task and its events read back, waits time
out, and pages of tasks iterate."""

from __future__ import annotations

import datetime
import os
import time
import uuid

import pytest

from ferry_sdk import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    TaskWaitTimeout,
    TransferItem,
    exclude,
    include,
)


def _write(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_a_transfer_with_every_option_moves_the_files_and_reads_back(hub, client):
    data = {
        "run1/a.dat": os.urandom(300_000),
        "run1/sub/b.dat": os.urandom(5_000),
        "run1/notes.tmp": b"scratch",
    }
    _write(hub.src_home, data)
    os.utime(hub.src_home / "run1/a.dat", (1_600_000_000, 1_600_000_000))
    deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    submission_id = str(uuid.uuid4())
    task_id = client.transfer(
        hub.src,
        "dst",
        [TransferItem("/~/run1", "/~/landed", recursive=True)],
        label="sdk run 1",
        sync_level="checksum",
        preserve_mtime=True,
        checksum_algorithm="sha256",
        filters=[exclude("*.tmp"), include("*")],
        bwlimit=50_000_000,
        notify="off",
        on_success=hub.hook,
        deadline=deadline,
        submission_id=submission_id,
    )
    # A retried submission (its answer lost) names the same task, once.
    retried = client.transfer(
        hub.src,
        "dst",
        [TransferItem("/~/run1", "/~/landed", recursive=True)],
        label="sdk run 1",
        submission_id=submission_id,
    )
    assert retried == task_id
    task = client.wait_task(task_id, timeout=120)
    events = client.list_events(task_id)
    assert task["status"] == "SUCCEEDED", (task, events)
    landed = hub.dst_home / "landed"
    assert (landed / "a.dat").read_bytes() == data["run1/a.dat"]
    assert (landed / "sub" / "b.dat").read_bytes() == data["run1/sub/b.dat"]
    assert not (landed / "notes.tmp").exists(), "the exclude rule travelled"
    assert int((landed / "a.dat").stat().st_mtime) == 1_600_000_000

    shown = client.get_task(task_id, items=True)
    assert shown["label"] == "sdk run 1"
    assert shown["files_transferred"] == 2
    assert shown["bytes_transferred"] == 305_000
    assert shown["checksum_algorithm"] == "sha256"
    assert shown["bwlimit"] == 50_000_000
    assert shown["filters"] == [
        {"action": "exclude", "pattern": "*.tmp"},
        {"action": "include", "pattern": "*"},
    ]
    assert shown["deadline"] == int(deadline.timestamp())
    assert shown["items"] == [{"source": "/~/run1", "destination": "/~/landed", "recursive": True}]
    assert shown["source_endpoint"] == hub.src and shown["destination_endpoint"] == hub.dst
    codes = [e["code"] for e in events]
    assert codes[0] == "SUBMITTED" and "SUCCEEDED" in codes, codes
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    if hub.hook:
        assert shown["on_success"] == hub.hook
        ran = hub.dst_home / "hook-ran"
        for _ in range(600):
            if ran.exists():
                break
            time.sleep(0.1)
        assert ran.read_text() == "sdk run 1"

    # Sync with delete: what the source no longer has goes from the
    # destination; what is the same is skipped.
    (hub.src_home / "run1/sub/b.dat").unlink()
    again = client.transfer(
        hub.src,
        hub.dst,
        [("/~/run1", "/~/landed", True)],
        sync_level="size",
        delete=True,
        filters=[exclude("*.tmp")],
    )
    task = client.wait_task(again, timeout=120)
    assert task["status"] == "SUCCEEDED", list(client.task_events(again))
    assert task["files_skipped"] == 1 and task["files_transferred"] == 0
    assert not (landed / "sub" / "b.dat").exists()
    assert (landed / "a.dat").read_bytes() == data["run1/a.dat"]

    # An ended task cannot be canceled: 409 with the hub's word.
    with pytest.raises(ConflictError) as refused:
        client.cancel_task(task_id)
    assert (refused.value.status, refused.value.code) == (409, "task_ended")

    listed = [t["task_id"] for t in client.task_list()]
    assert task_id in listed and again in listed
    assert listed.index(again) < listed.index(task_id), "newest first"


def test_bad_options_are_refused_before_or_by_the_hub(hub, client):
    item = [("/~/nothing", "/~/nowhere")]
    with pytest.raises(ValueError, match="sync_level"):
        client.transfer(hub.src, hub.dst, item, sync_level="fast")
    with pytest.raises(ValueError, match="checksum"):
        client.transfer(hub.src, hub.dst, item, checksum_algorithm="md5")
    with pytest.raises(ValueError, match="include"):
        client.transfer(hub.src, hub.dst, item, filters=[("maybe", "*")])
    with pytest.raises(ValueError, match="verif"):
        client.transfer(hub.src, hub.dst, item, verify_checksum=False)
    # The hub's own checks answer as typed errors with its words.
    with pytest.raises(BadRequestError) as refused:
        client.transfer(hub.src, hub.dst, item, bwlimit=1)
    assert refused.value.status == 400 and refused.value.message
    if hub.hook:
        with pytest.raises(BadRequestError) as refused:
            client.transfer(hub.src, hub.dst, item, on_success="nosuch")
        assert hub.hook in refused.value.message
    with pytest.raises(NotFoundError):
        client.transfer(hub.src, "no-such-endpoint", item)


def test_a_wait_times_out_and_a_canceled_task_ends(hub, client):
    _write(hub.src_home, {"slow.dat": os.urandom(2_000_000)})
    # At the slowest rate the hub allows this takes minutes.
    task_id = client.transfer(hub.src, hub.dst, [("/~/slow.dat", "/~/slow.dat")], bwlimit=10_000)
    # Were the timeout not kept, the wait would last until the task ended.
    with pytest.raises(TaskWaitTimeout) as waited:
        client.wait_task(task_id, timeout=1.5)
    assert waited.value.task["status"] == "ACTIVE"
    canceled = client.cancel_task(task_id)
    assert canceled["status"] == "CANCELED"
    assert client.wait_task(task_id, timeout=30)["status"] == "CANCELED"
    assert "CANCELED" in [e["code"] for e in client.task_events(task_id)]


def test_an_unknown_task_is_not_found(client):
    with pytest.raises(NotFoundError):
        client.get_task("no-such-task")
