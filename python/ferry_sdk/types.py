"""The shapes of the hub's JSON answers, for type checkers. Answers are
plain dicts; fields a newer hub adds appear in them too."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:  # pragma: no cover - older Pythons
    from typing import TypedDict

    try:
        from typing_extensions import NotRequired
    except ImportError:  # typing only: the runtime never reads these
        NotRequired = Optional  # type: ignore[assignment]

__all__ = [
    "EndpointInfo",
    "FsEntry",
    "Listing",
    "FilterRule",
    "TransferItemDict",
    "TaskInfo",
    "TaskEvent",
    "WhoAmI",
]


class EndpointInfo(TypedDict):
    id: str
    display_name: str
    owner: str
    connected: bool
    created: int
    revoked: bool
    allowed_domains: NotRequired[List[str]]


class FsEntry(TypedDict):
    #: The entry's name (``str``; odd bytes as lone surrogates, see
    #: :func:`ferry_sdk.paths.decode_path`).
    name: str
    #: ``file``, ``dir``, ``symlink`` or ``other``.
    type: str
    size: int
    mtime: int
    mode: int


class Listing(TypedDict):
    entries: List[FsEntry]
    #: The endpoint sent only the first entries of a very large directory.
    truncated: bool


class FilterRule(TypedDict):
    #: ``include`` or ``exclude``.
    action: str
    pattern: str


class TransferItemDict(TypedDict):
    source: str
    destination: str
    recursive: bool


class TaskInfo(TypedDict):
    task_id: str
    #: ``ACTIVE``, ``SUCCEEDED``, ``FAILED`` or ``CANCELED``.
    status: str
    label: Optional[str]
    source_endpoint: str
    source_endpoint_name: str
    destination_endpoint: str
    destination_endpoint_name: str
    files: int
    files_transferred: int
    files_skipped: int
    bytes_transferred: int
    bytes: int
    bytes_skipped: int
    bytes_resent: int
    bytes_relayed: NotRequired[int]
    walk_done: bool
    faults: int
    attempt: int
    #: Over how many nodes of each endpoint the latest attempt was spread (1: not spread).
    nodes: NotRequired[int]
    item_count: int
    checksum_algorithm: NotRequired[str]
    on_success: NotRequired[str]
    filters: NotRequired[List[FilterRule]]
    bwlimit: NotRequired[int]
    created: int
    completed: Optional[int]
    deadline: Optional[int]
    last_fault: Optional[str]
    fatal_error: Optional[str]
    waiting_for: Optional[str]
    items: NotRequired[List[TransferItemDict]]


class TaskEvent(TypedDict):
    seq: int
    time: int
    #: A stable word: SUBMITTED, STARTED, FAULT, SUCCEEDED, FAILED, ...
    code: str
    is_error: bool
    description: str


class WhoAmI(TypedDict):
    identity: str
    username: str
    linked_identities: List[Dict[str, Any]]
    session_identities: List[Dict[str, Any]]
