"""The live hub the suite runs against, from the environment that
tests/tests/python_sdk.rs sets (a real hub, alice, and her endpoints
``src`` and ``dst`` with their daemons running), and a small browser for
the hub's login and consent pages."""

from __future__ import annotations

import os
import pathlib
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple
from urllib.parse import urljoin

import pytest
import requests

import ferry_sdk

NEEDED = (
    "FERRY_HUB_URL",
    "FERRY_HUB_CA",
    "FERRY_TOKEN",
    "FERRY_USER",
    "FERRY_PASSWORD",
    "FERRY_CLIENT_ID",
    "FERRY_CLIENT_SECRET",
    "FERRY_SRC_ENDPOINT",
    "FERRY_DST_ENDPOINT",
    "FERRY_SRC_HOME",
    "FERRY_DST_HOME",
)


class Hub:
    def __init__(self) -> None:
        missing = [name for name in NEEDED if not os.environ.get(name)]
        if missing:
            pytest.skip(
                "these tests run against a live hub: run `cargo test -p ferry-tests --test python_sdk` "
                f"(missing {', '.join(missing)})"
            )
        env = os.environ
        self.url = env["FERRY_HUB_URL"]
        self.ca = env["FERRY_HUB_CA"]
        self.token = env["FERRY_TOKEN"]
        self.user = env["FERRY_USER"]
        self.password = env["FERRY_PASSWORD"]
        self.client_id = env["FERRY_CLIENT_ID"]
        self.client_secret = env["FERRY_CLIENT_SECRET"]
        self.src = env["FERRY_SRC_ENDPOINT"]
        self.dst = env["FERRY_DST_ENDPOINT"]
        self.src_home = pathlib.Path(env["FERRY_SRC_HOME"])
        self.dst_home = pathlib.Path(env["FERRY_DST_HOME"])
        self.hook = env.get("FERRY_HOOK")


@pytest.fixture(scope="session")
def hub() -> Hub:
    return Hub()


@pytest.fixture(scope="session")
def client(hub: Hub) -> ferry_sdk.FerryClient:
    return ferry_sdk.FerryClient(hub.url, hub.token, ca_file=hub.ca)


class _Forms(HTMLParser):
    """The POST forms of a page: (action, hidden fields)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: List[Tuple[str, List[Tuple[str, str]]]] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a: Dict[str, str] = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "").lower() == "post":
            self.forms.append((a.get("action", ""), []))
            self._in_form = True
        elif tag == "input" and self._in_form and a.get("type") == "hidden":
            self.forms[-1][1].append((a.get("name", ""), a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


class Browser:
    """Follows redirects, keeps cookies, and submits a page's first POST
    form with its hidden fields plus what the user types: the hub's side
    of a login as a person's browser does it."""

    def __init__(self, ca: str) -> None:
        self.http = requests.Session()
        # Per request: REQUESTS_CA_BUNDLE would override a session's verify.
        self.ca = ca

    def get(self, url: str) -> requests.Response:
        page = self.http.get(url, timeout=30, verify=self.ca)
        assert page.status_code == 200, f"GET {url}: {page.status_code}: {page.text[:500]}"
        return page

    def submit(self, page: requests.Response, typed: Dict[str, str]) -> requests.Response:
        parser = _Forms()
        parser.feed(page.text)
        assert parser.forms, f"no POST form on {page.url}: {page.text[:500]}"
        action, hidden = parser.forms[0]
        answer = self.http.post(
            urljoin(page.url, action),
            data=hidden + list(typed.items()),
            timeout=30,
            verify=self.ca,
        )
        assert answer.status_code == 200, f"POST {action}: {answer.status_code}: {answer.text[:500]}"
        return answer


def sign_in_and_approve(hub: Hub, authorize_url: str, decision: str = "approve") -> requests.Response:
    """What a person does with the login URL: sign in, then approve (or
    deny) on the consent page. The page the browser ends on."""
    browser = Browser(hub.ca)
    login = browser.get(authorize_url)
    consent = browser.submit(login, {"username": hub.user, "password": hub.password})
    assert 'name="decision"' in consent.text, f"not the consent page: {consent.text[:500]}"
    return browser.submit(consent, {"decision": decision})


class _Code(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.code: Optional[str] = None
        self._here = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        self._here = ("id", "auth-code") in attrs

    def handle_data(self, data: str) -> None:
        if self._here and self.code is None:
            self.code = data.strip()


def shown_code(page: requests.Response) -> str:
    """The one-time code on the hub's copy-the-code page."""
    parser = _Code()
    parser.feed(page.text)
    assert parser.code, f"no code on {page.url}: {page.text[:500]}"
    return parser.code
