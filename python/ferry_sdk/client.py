"""The hub's REST API (``/api/v1``) as a Python class: endpoints, their
files, and transfer tasks."""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)
from urllib.parse import quote

import requests

from ._transport import DEFAULT_TIMEOUT, CAFile, Transport
from .auth import AccessTokenAuthorizer, Authorizer
from .errors import FerryError, TaskWaitTimeout, TransportError, api_error
from .paths import PathLike, decode_path, encode_path
from .types import EndpointInfo, Listing, TaskEvent, TaskInfo, WhoAmI

__all__ = ["FerryClient", "TransferItem", "include", "exclude", "SYNC_LEVELS", "CHECKSUM_ALGORITHMS"]

#: ``sync_level`` values: what makes a destination file need no transfer.
SYNC_LEVELS = ("exists", "size", "mtime", "checksum")
#: ``checksum_algorithm`` values.
CHECKSUM_ALGORITHMS = ("sha256", "blake3")
#: ``notify`` words, besides ``on`` and ``off``.
NOTIFY_EVENTS = ("succeeded", "failed", "inactive")
#: The hub holds a task lookup at most this long (its ``wait_ms`` cap).
_WAIT_SLICE = 5.0
#: Most pages one iteration follows: a hub that links pages in a circle
#: cannot keep a caller forever.
_MAX_PAGES = 100_000

FilterSpec = Union[Tuple[str, PathLike], Dict[str, Any]]
Deadline = Union[int, float, _dt.datetime, _dt.timedelta]


@dataclass
class TransferItem:
    """One source path and where it lands; ``recursive`` for a directory
    whose contents land in ``destination``."""

    source: PathLike
    destination: PathLike
    recursive: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {
            "source": encode_path(self.source),
            "destination": encode_path(self.destination),
            "recursive": bool(self.recursive),
        }


def include(pattern: PathLike) -> Tuple[str, PathLike]:
    """An ``--include`` rule for :meth:`FerryClient.transfer`'s ``filters``."""
    return ("include", pattern)


def exclude(pattern: PathLike) -> Tuple[str, PathLike]:
    """An ``--exclude`` rule for :meth:`FerryClient.transfer`'s ``filters``."""
    return ("exclude", pattern)


def _filter_json(rule: FilterSpec) -> Dict[str, str]:
    if isinstance(rule, dict):
        action, pattern = rule.get("action"), rule.get("pattern")
    else:
        action, pattern = rule
    if action not in ("include", "exclude"):
        raise ValueError(f"filter action {action!r} must be 'include' or 'exclude'")
    if pattern is None:
        raise ValueError("a filter rule needs a pattern")
    return {"action": action, "pattern": encode_path(pattern)}


def _deadline(value: Deadline) -> int:
    if isinstance(value, _dt.timedelta):
        return int(time.time() + value.total_seconds())
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("deadline datetime must be timezone-aware (e.g. tzinfo=timezone.utc)")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("deadline must be Unix seconds, a datetime or a timedelta")
    return int(value)


def _notify(value: Union[str, Iterable[str], bool]) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, str):
        return value
    words = list(value)
    for word in words:
        if word not in NOTIFY_EVENTS:
            raise ValueError(f"notify event {word!r} must be one of {', '.join(NOTIFY_EVENTS)}")
    return ",".join(words) if words else "off"


def _segment(text: str) -> str:
    """One path segment of a URL (an endpoint's or task's id or name)."""
    return quote(text, safe="")


class FerryClient:
    """A session with a ferry hub's REST API.

    ``authorizer`` is an :class:`~ferry_sdk.auth.Authorizer` or an access
    token (``str``). ``ca_file`` names the hub's CA certificate (PEM) when
    the system does not trust it. Every method raises a
    :class:`~ferry_sdk.errors.FerryAPIError` subclass for the hub's
    refusals and :class:`~ferry_sdk.errors.TransportError` when no answer
    came.
    """

    def __init__(
        self,
        hub_url: str,
        authorizer: Union[Authorizer, str],
        *,
        ca_file: CAFile = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.transport = Transport(hub_url, ca_file=ca_file, timeout=timeout, session=session)
        self.authorizer = (
            AccessTokenAuthorizer(authorizer) if isinstance(authorizer, str) else authorizer
        )

    def __repr__(self) -> str:
        return f"FerryClient({self.transport.base_url!r})"

    @property
    def hub_url(self) -> str:
        return self.transport.base_url

    # --- plumbing ---

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Optional[Dict[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> requests.Response:
        if not self.transport.same_origin(url):
            raise FerryError(f"refusing to send credentials to {url!r}: it is not the hub's")

        def send() -> requests.Response:
            headers = {
                "Authorization": self.authorizer.authorization_header(),
                "Accept": "application/json",
            }
            return self.transport.request(
                method, url, params=params, json=json, headers=headers, timeout=timeout
            )

        response = send()
        # The hub refuses a bad token before it reads the body, so the
        # request can go again once the authorizer has a new token.
        if response.status_code == 401 and self.authorizer.handle_unauthorized():
            response = send()
        if response.status_code >= 400:
            raise api_error(response)
        return response

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise TransportError(
                f"the hub's answer to {response.request.method} {response.url} is not JSON"
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Dict[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Any API route (``/api/v1/...``); the answer's JSON."""
        return self._json(
            self._send(method, self.transport.url(path), params=params, json=json, timeout=timeout)
        )

    def paginate(self, path: str, params: Optional[Dict[str, Any]] = None) -> Iterator[Any]:
        """Every item of a list route, page after page.

        A list is a JSON array; when more remain, the hub links the next
        page in a ``Link: <URL>; rel="next"`` header (with ``limit`` and
        ``marker``), which is followed. A hub that answers in one page ends
        the iteration after it.
        """
        url: Optional[str] = self.transport.url(path)
        query: Optional[Dict[str, Any]] = {k: v for k, v in (params or {}).items() if v is not None}
        seen = set()
        for _ in range(_MAX_PAGES):
            assert url is not None
            response = self._send("GET", url, params=query)
            page = self._json(response)
            if not isinstance(page, list):
                raise TransportError(f"the hub's answer to GET {response.url} is not a list")
            yield from page
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            url = self.transport.url(following)
            # The link carries the whole query (limit and marker).
            query = None
            if url in seen:
                raise TransportError(f"the hub links page {url} twice; stopping")
            seen.add(url)
        raise TransportError(f"more than {_MAX_PAGES} pages; stopping")

    # --- who and where ---

    def whoami(self) -> WhoAmI:
        return cast(WhoAmI, self.request("GET", "/api/v1/whoami"))

    def endpoint_search(
        self,
        text: str = "",
        *,
        filter_scope: str = "my-endpoints",
        limit: Optional[int] = None,
    ) -> Iterator[EndpointInfo]:
        """Endpoints whose name contains ``text``: ``filter_scope`` is
        ``my-endpoints``, ``shared-with-me`` or ``all``. ``limit`` is the
        page size asked for; the iterator goes through every page."""
        params = {"q": text, "filter_scope": filter_scope, "limit": limit}
        return cast(Iterator[EndpointInfo], self.paginate("/api/v1/endpoints", params))

    def get_endpoint(self, endpoint: str) -> EndpointInfo:
        """One endpoint, by id or by your display name for it."""
        return cast(EndpointInfo, self.request("GET", f"/api/v1/endpoints/{_segment(endpoint)}"))

    # --- files on an endpoint ---

    def _fs(self, endpoint: str, op: Dict[str, Any]) -> Dict[str, Any]:
        outcome = self.request("POST", f"/api/v1/endpoints/{_segment(endpoint)}/fs", json=op)
        if not isinstance(outcome, dict):
            raise TransportError("the hub's answer to a file operation is not an object")
        return outcome

    def ls(self, endpoint: str, path: PathLike = "/~/") -> Listing:
        """A directory's entries (``name`` decoded to ``str``)."""
        outcome = self._fs(endpoint, {"op": "list", "path": encode_path(path)})
        entries = outcome.get("entries") or []
        for entry in entries:
            entry["name"] = decode_path(entry["name"])
        return cast(Listing, {"entries": entries, "truncated": bool(outcome.get("truncated"))})

    def mkdir(self, endpoint: str, path: PathLike) -> None:
        self._fs(endpoint, {"op": "mkdir", "path": encode_path(path)})

    def rename(self, endpoint: str, source: PathLike, destination: PathLike) -> None:
        self._fs(
            endpoint,
            {"op": "rename", "from": encode_path(source), "to": encode_path(destination)},
        )

    def rm(self, endpoint: str, path: PathLike, *, recursive: bool = False) -> None:
        """Removes a file, an empty directory, or with ``recursive`` a tree."""
        self._fs(endpoint, {"op": "remove", "path": encode_path(path), "recursive": bool(recursive)})

    # --- tasks ---

    def transfer(
        self,
        source_endpoint: str,
        destination_endpoint: str,
        items: Sequence[Union[TransferItem, Tuple[PathLike, PathLike], Tuple[PathLike, PathLike, bool]]],
        *,
        label: Optional[str] = None,
        sync_level: Optional[str] = None,
        delete: bool = False,
        preserve_mtime: bool = True,
        preserve_mode: bool = True,
        skip_source_errors: bool = False,
        streams: Optional[int] = None,
        verify_checksum: bool = True,
        checksum_algorithm: str = "blake3",
        filters: Sequence[FilterSpec] = (),
        bwlimit: Optional[int] = None,
        notify: Union[str, Iterable[str], bool, None] = None,
        on_success: Optional[str] = None,
        deadline: Optional[Deadline] = None,
        submission_id: Optional[str] = None,
    ) -> str:
        """Submits a transfer task; its id.

        ``items`` are :class:`TransferItem` or ``(source, destination[,
        recursive])`` tuples. The options are ``ferry transfer``'s:
        ``sync_level`` one of :data:`SYNC_LEVELS` (``None``: copy every
        file); ``delete`` removes destination files the source lacks;
        ``filters`` are :func:`include`/:func:`exclude` rules in order;
        ``bwlimit`` caps the rate in bytes per second; ``notify`` is ``on``,
        ``off`` or events to e-mail (``["failed"]``); ``on_success`` names a
        hook of the destination's; ``deadline`` is Unix seconds, an aware
        ``datetime`` or a ``timedelta`` from now. Every file is verified by
        checksum (``checksum_algorithm``: ``blake3`` or ``sha256``); ferry
        has no way to turn that off, so ``verify_checksum=False`` is refused.

        ``submission_id`` makes the submission idempotent on hubs that
        support it: the same id submitted again answers the first task
        instead of making another. One is made when not given; to retry a
        submission whose answer was lost, call again with the same id.
        """
        if not verify_checksum:
            raise ValueError("ferry always verifies files by checksum; verify_checksum must be True")
        if sync_level is not None and sync_level not in SYNC_LEVELS:
            raise ValueError(f"sync_level {sync_level!r} must be one of {', '.join(SYNC_LEVELS)}")
        if checksum_algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(
                f"checksum_algorithm {checksum_algorithm!r} must be one of {', '.join(CHECKSUM_ALGORITHMS)}"
            )
        wire_items = []
        for item in items:
            if not isinstance(item, TransferItem):
                item = TransferItem(*item)
            wire_items.append(item.to_json())
        if not wire_items:
            raise ValueError("a transfer needs at least one item")
        options: Dict[str, Any] = {
            "sync_level": sync_level,
            "delete": bool(delete),
            "preserve_mtime": bool(preserve_mtime),
            "preserve_mode": bool(preserve_mode),
            "skip_source_errors": bool(skip_source_errors),
            "streams": streams,
            "checksum_algorithm": checksum_algorithm,
        }
        if filters:
            options["filters"] = [_filter_json(rule) for rule in filters]
        if bwlimit is not None:
            options["bwlimit"] = int(bwlimit)
        if on_success is not None:
            options["on_success"] = on_success
        body: Dict[str, Any] = {
            "source_endpoint": source_endpoint,
            "destination_endpoint": destination_endpoint,
            "items": wire_items,
            "options": options,
            "submission_id": submission_id or str(uuid.uuid4()),
        }
        if label is not None:
            body["label"] = label
        if deadline is not None:
            body["deadline"] = _deadline(deadline)
        if notify is not None:
            body["notify"] = _notify(notify)
        answer = self.request("POST", "/api/v1/tasks", json=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("task_id"), str):
            raise TransportError("the hub's answer to a submission has no task_id")
        task_id: str = answer["task_id"]
        return task_id

    def get_task(self, task_id: str, *, items: bool = False) -> TaskInfo:
        """A task's state; with ``items`` its source and destination paths."""
        params = {"items": "true"} if items else None
        return cast(TaskInfo, self.request("GET", f"/api/v1/tasks/{_segment(task_id)}", params=params))

    def wait_task(self, task_id: str, timeout: float = 300.0) -> TaskInfo:
        """Waits until the task ends (SUCCEEDED, FAILED or CANCELED) and
        returns it; :class:`~ferry_sdk.errors.TaskWaitTimeout` after
        ``timeout`` seconds. The hub holds each lookup until the task ends
        (up to 5 s), so the end is seen at once, without busy polling."""
        give_up = time.monotonic() + max(0.0, timeout)
        path = f"/api/v1/tasks/{_segment(task_id)}"
        while True:
            left = give_up - time.monotonic()
            wait = max(0.0, min(left, _WAIT_SLICE))
            task = cast(
                TaskInfo,
                self.request(
                    "GET",
                    path,
                    params={"wait_ms": int(wait * 1000)},
                    timeout=self.transport.timeout + wait,
                ),
            )
            if task.get("status") != "ACTIVE":
                return task
            if time.monotonic() >= give_up:
                raise TaskWaitTimeout(
                    f"task {task_id} is still ACTIVE after {timeout:g} seconds", task
                )

    def cancel_task(self, task_id: str) -> TaskInfo:
        return cast(TaskInfo, self.request("POST", f"/api/v1/tasks/{_segment(task_id)}/cancel"))

    def task_list(self, *, limit: Optional[int] = None) -> Iterator[TaskInfo]:
        """Your tasks, newest first, through every page."""
        return cast(Iterator[TaskInfo], self.paginate("/api/v1/tasks", {"limit": limit}))

    def task_events(self, task_id: str, *, limit: Optional[int] = None) -> Iterator[TaskEvent]:
        """A task's events, oldest first."""
        return cast(
            Iterator[TaskEvent],
            self.paginate(f"/api/v1/tasks/{_segment(task_id)}/events", {"limit": limit}),
        )

    def list_events(self, task_id: str) -> List[TaskEvent]:
        return list(self.task_events(task_id))
