"""Endpoint search and lookup, and ls/mkdir/rename/rm on a real endpoint,
checked on its disk."""

from __future__ import annotations

import os

import pytest

from ferry_sdk import BadRequestError, NotFoundError, OperationFailedError


def test_search_finds_both_endpoints_by_name_and_id(hub, client):
    found = {e["display_name"]: e for e in client.endpoint_search()}
    assert found["src"]["id"] == hub.src and found["dst"]["id"] == hub.dst
    assert found["src"]["connected"] is True
    assert found["src"]["owner"] == hub.user
    assert [e["id"] for e in client.endpoint_search("ds")] == [hub.dst]
    assert list(client.endpoint_search("no-such-endpoint")) == []
    # A page size as small as one still yields every endpoint: the
    # iterator follows the hub's next-page links when it sends them.
    assert {e["id"] for e in client.endpoint_search(limit=1)} >= {hub.src, hub.dst}
    assert client.get_endpoint(hub.src)["display_name"] == "src"
    assert client.get_endpoint("dst")["id"] == hub.dst


def test_an_unknown_endpoint_is_not_found(client):
    with pytest.raises(NotFoundError) as missing:
        client.get_endpoint("no-such-endpoint")
    assert missing.value.status == 404
    assert missing.value.code == "not_found"
    assert "no-such-endpoint" in missing.value.message
    with pytest.raises(NotFoundError):
        client.ls("no-such-endpoint", "/~/")


def test_mkdir_ls_rename_rm_change_the_endpoints_disk(hub, client):
    home = hub.dst_home
    client.mkdir(hub.dst, "/~/sdk-files")
    assert (home / "sdk-files").is_dir()
    (home / "sdk-files" / "a.txt").write_bytes(b"alpha\n")
    (home / "sdk-files" / "50% done").write_bytes(b"odd name")

    listing = client.ls(hub.dst, "/~/sdk-files")
    assert listing["truncated"] is False
    entries = {e["name"]: e for e in listing["entries"]}
    assert set(entries) == {"a.txt", "50% done"}
    assert entries["a.txt"]["type"] == "file" and entries["a.txt"]["size"] == 6

    # A name with '%' travels escaped and round-trips.
    client.rename(hub.dst, "/~/sdk-files/50% done", "/~/sdk-files/b.txt")
    assert (home / "sdk-files" / "b.txt").read_bytes() == b"odd name"
    assert not (home / "sdk-files" / "50% done").exists()

    # So does a name that is not UTF-8: ls gives it as os.fsdecode would,
    # and that str (or the bytes) names the file again.
    (home / "sdk-files").joinpath(os.fsdecode(b"raw\xffname")).write_bytes(b"raw")
    odd = [e["name"] for e in client.ls(hub.dst, "/~/sdk-files")["entries"] if e["name"].startswith("raw")]
    assert odd == [os.fsdecode(b"raw\xffname")]
    client.rename(hub.dst, "/~/sdk-files/" + odd[0], b"/~/sdk-files/c\xfe.txt")
    assert (home / "sdk-files").joinpath(os.fsdecode(b"c\xfe.txt")).read_bytes() == b"raw"
    client.rm(hub.dst, b"/~/sdk-files/c\xfe.txt")

    client.rm(hub.dst, "/~/sdk-files/a.txt")
    assert not (home / "sdk-files" / "a.txt").exists()

    # A directory with files in it goes only when asked to go recursively.
    with pytest.raises(OperationFailedError) as failed:
        client.rm(hub.dst, "/~/sdk-files")
    assert failed.value.status == 422 and failed.value.code == "operation_failed"
    assert (home / "sdk-files" / "b.txt").exists()
    client.rm(hub.dst, "/~/sdk-files", recursive=True)
    assert not (home / "sdk-files").exists()


def test_a_listing_of_a_missing_directory_fails_with_the_endpoints_words(hub, client):
    with pytest.raises(OperationFailedError) as failed:
        client.ls(hub.src, "/~/no-such-dir")
    assert "no-such-dir" in failed.value.message


def test_a_relative_path_is_a_bad_request(hub, client):
    with pytest.raises((BadRequestError, OperationFailedError)):
        client.mkdir(hub.dst, "relative/dir")
