"""The list iterator's side of pagination, and the bound on an answer.

The hub answers a JSON array per page and links the next one (``Link:
<URL>; rel="next"``). This branch's hub answers lists in one page (the
live tests cover that), so the pages here come from a stand-in hub behind
a requests adapter, as the hub's pagination will answer them, to check
the iterator follows the links, sends the query only once, keeps
credentials on the hub's origin, and stops on a loop."""

from __future__ import annotations

import io
import json
from typing import Dict, List, Optional

import pytest
import requests
from requests.adapters import BaseAdapter

from ferry_sdk import FerryClient, FerryError, TransportError

HUB = "https://hub.test:8443"


class Pages(BaseAdapter):
    def __init__(self, pages: Dict[str, tuple]) -> None:
        super().__init__()
        self.pages = pages
        self.asked: List[str] = []
        self.auth: List[Optional[str]] = []

    def send(self, request, **kwargs):  # noqa: D102
        self.asked.append(request.url)
        self.auth.append(request.headers.get("Authorization"))
        body, link = self.pages[request.url]
        response = requests.Response()
        response.status_code = 200
        response.url = request.url
        response.request = request
        response.raw = io.BytesIO(json.dumps(body).encode())
        response.headers["Content-Type"] = "application/json"
        if link:
            response.headers["Link"] = f'<{link}>; rel="next"'
        return response

    def close(self) -> None:
        pass


def client_with(pages: Pages) -> FerryClient:
    session = requests.Session()
    session.mount("https://", pages)
    return FerryClient(HUB, "tok", session=session)


def test_the_iterator_follows_next_links_across_pages():
    pages = Pages(
        {
            f"{HUB}/api/v1/tasks?limit=2": ([{"task_id": "a"}, {"task_id": "b"}], "/api/v1/tasks?limit=2&marker=b"),
            f"{HUB}/api/v1/tasks?limit=2&marker=b": ([{"task_id": "c"}, {"task_id": "d"}], f"{HUB}/api/v1/tasks?limit=2&marker=d"),
            f"{HUB}/api/v1/tasks?limit=2&marker=d": ([{"task_id": "e"}], None),
        }
    )
    assert [t["task_id"] for t in client_with(pages).task_list(limit=2)] == list("abcde")
    assert len(pages.asked) == 3
    assert pages.auth == ["Bearer tok"] * 3


def test_one_page_without_a_link_ends_the_iteration():
    pages = Pages({f"{HUB}/api/v1/endpoints?q=x&filter_scope=all": ([{"id": "1"}], None)})
    assert [e["id"] for e in client_with(pages).endpoint_search("x", filter_scope="all")] == ["1"]


def test_a_next_link_to_another_origin_gets_no_credentials():
    pages = Pages({f"{HUB}/api/v1/tasks": ([{"task_id": "a"}], "https://elsewhere.test/steal")})
    listed = client_with(pages).task_list()
    assert next(listed)["task_id"] == "a"
    with pytest.raises(FerryError, match="not the hub's"):
        next(listed)
    assert pages.asked == [f"{HUB}/api/v1/tasks"]


def test_pages_linked_in_a_circle_stop():
    pages = Pages(
        {
            f"{HUB}/api/v1/tasks": ([{"task_id": "a"}], "/api/v1/tasks?marker=a"),
            f"{HUB}/api/v1/tasks?marker=a": ([{"task_id": "b"}], "/api/v1/tasks?marker=a"),
        }
    )
    with pytest.raises(TransportError, match="twice"):
        list(client_with(pages).task_list())


def test_an_answer_larger_than_the_bound_is_refused(monkeypatch):
    from ferry_sdk import _transport

    monkeypatch.setattr(_transport, "MAX_ANSWER", 1000)
    pages = Pages({f"{HUB}/api/v1/tasks": ([{"task_id": "x" * 2000}], None)})
    with pytest.raises(TransportError, match="larger than 1000 bytes"):
        list(client_with(pages).task_list())
