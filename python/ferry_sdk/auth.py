"""Logging in to a ferry hub and keeping a live access token.

Two kinds of OAuth2 client can get tokens from the hub's ``/token``:

* a *native app* (a public client such as the built-in ``ferry-cli``):
  the authorization-code flow with PKCE S256 (RFC 7636), either with the
  hub's copy-the-code page as redirect (out of band, what ``ferry login``
  does) or with a loopback redirect to this process (RFC 8252);
  :class:`NativeAppAuthClient`;
* a *confidential client* (a portal or a service account registered with
  ``ferry app create``, or a client an admin added with ``ferry-hub client
  add``): the authorization-code flow and refresh tokens for a portal, the
  client_credentials grant for a service account, each with its secret;
  :class:`ConfidentialAppAuthClient`.

An *authorizer* gives :class:`~ferry_sdk.FerryClient` the ``Authorization``
header of each request and gets a new token when the old one expires:
:class:`AccessTokenAuthorizer` (a fixed token), :class:`RefreshTokenAuthorizer`
(refresh tokens, rotated on each use: save the new one, see ``on_refresh``),
:class:`ClientCredentialsAuthorizer`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import secrets
import threading
import time
import webbrowser
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests

from ._transport import DEFAULT_TIMEOUT, CAFile, Transport
from .errors import FerryAPIError, LoginError, oauth_error

__all__ = [
    "CLI_CLIENT_ID",
    "SCOPE_SETUP",
    "SCOPE_TRANSFER",
    "Tokens",
    "PKCEFlow",
    "NativeAppAuthClient",
    "ConfidentialAppAuthClient",
    "Authorizer",
    "AccessTokenAuthorizer",
    "RefreshTokenAuthorizer",
    "ClientCredentialsAuthorizer",
]

#: The ``ferry`` command line's client id: the hub's built-in public client.
CLI_CLIENT_ID = "ferry-cli"
#: Scope to create and register endpoints.
SCOPE_SETUP = "endpoint:setup"
#: Scope for transfers and file operations.
SCOPE_TRANSFER = "transfer"
#: The hub's copy-the-code page, the out-of-band redirect.
AUTH_CODE_PATH = "/auth/code"

# A token this close to its expiry is renewed before use, so it does not
# expire on the way.
_MIN_LIFETIME = 30.0


@dataclass
class Tokens:
    """What ``/token`` answered. ``expires_at`` is Unix seconds."""

    access_token: str
    expires_at: float
    refresh_token: Optional[str] = None
    scope: str = ""
    token_type: str = "Bearer"

    @classmethod
    def from_response(cls, body: Any, now: Optional[float] = None) -> "Tokens":
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise LoginError("the hub's token answer has no access_token")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, (int, float)) or expires_in < 0:
            raise LoginError("the hub's token answer has no valid expires_in")
        def text(key: str, default: str) -> str:
            value = body.get(key)
            return value if isinstance(value, str) else default

        return cls(
            access_token=body["access_token"],
            expires_at=(time.time() if now is None else now) + float(expires_in),
            refresh_token=text("refresh_token", "") or None,
            scope=text("scope", ""),
            token_type=text("token_type", "Bearer"),
        )

    def expires_within(self, seconds: float) -> bool:
        return self.expires_at <= time.time() + seconds

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready form, for saving; :meth:`from_dict` reads it back."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "token_type": self.token_type,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Tokens":
        return cls(
            access_token=data["access_token"],
            expires_at=float(data["expires_at"]),
            refresh_token=data.get("refresh_token"),
            scope=data.get("scope", ""),
            token_type=data.get("token_type", "Bearer"),
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class _AuthClient:
    def __init__(
        self,
        hub_url: str,
        *,
        ca_file: CAFile = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.transport = Transport(hub_url, ca_file=ca_file, timeout=timeout, session=session)

    @property
    def hub_url(self) -> str:
        return self.transport.base_url

    def _token(self, form: Dict[str, str]) -> Tokens:
        headers = {"Accept": "application/json", **self._client_headers()}
        response = self.transport.request(
            "POST", self.transport.url("/token"), data=form, headers=headers
        )
        if response.status_code != 200:
            raise oauth_error(response)
        try:
            body = response.json()
        except ValueError:
            raise LoginError("the hub's token answer is not JSON") from None
        return Tokens.from_response(body)

    def revoke(self, token: str, token_type_hint: Optional[str] = None) -> None:
        """Ends a token (RFC 7009): a refresh token ends its whole grant."""
        form = {"token": token, **self._client_form()}
        if token_type_hint:
            form["token_type_hint"] = token_type_hint
        response = self.transport.request(
            "POST", self.transport.url("/revoke"), data=form, headers=self._client_headers()
        )
        if response.status_code != 200:
            raise oauth_error(response)

    def _client_form(self) -> Dict[str, str]:
        return {}

    def _client_headers(self) -> Dict[str, str]:
        return {}


@dataclass
class PKCEFlow:
    """One authorization request: open :attr:`authorize_url` in a browser,
    then give the code (or the URL the browser was sent back to) to
    :meth:`exchange_code` (:meth:`exchange_redirect`)."""

    auth_client: "NativeAppAuthClient"
    authorize_url: str
    redirect_uri: str
    verifier: str
    state: str

    def exchange_code(self, code: str) -> Tokens:
        code = code.strip()
        if not code:
            raise LoginError("no auth code given")
        return self.auth_client._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.auth_client.client_id,
                "code_verifier": self.verifier,
            }
        )

    def exchange_redirect(self, url: str) -> Tokens:
        """Reads the redirect the hub sent the browser to (``code`` and
        ``state``, or ``error``) and trades the code for tokens."""
        query = parse_qs(urlsplit(url).query)
        state = query.get("state", [None])[0]
        if state != self.state:
            raise LoginError("the login answer's state does not match this login; start again")
        if "error" in query:
            error = query["error"][0]
            description = query.get("error_description", [""])[0]
            if error == "access_denied":
                raise LoginError("the login was denied in the browser")
            raise LoginError(f"the hub refused the login: {error}: {description}"[:300])
        code = query.get("code", [""])[0]
        return self.exchange_code(code)


class NativeAppAuthClient(_AuthClient):
    """Logs in as a public client with PKCE S256.

    ``client_id`` is ``ferry-cli`` (the built-in client) unless you
    registered an app of your own. ``ca_file`` is the hub's CA (PEM) when
    the system does not trust it.
    """

    def __init__(
        self,
        hub_url: str,
        client_id: str = CLI_CLIENT_ID,
        *,
        ca_file: CAFile = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ) -> None:
        super().__init__(hub_url, ca_file=ca_file, timeout=timeout, session=session)
        self.client_id = client_id

    def _client_form(self) -> Dict[str, str]:
        return {"client_id": self.client_id}

    def start_flow(
        self,
        redirect_uri: Optional[str] = None,
        scopes: Iterable[str] = (SCOPE_SETUP, SCOPE_TRANSFER),
    ) -> PKCEFlow:
        """A fresh verifier, state and authorize URL. Without
        ``redirect_uri`` the code is shown on the hub's page for the user to
        copy (out of band); a loopback URL (``http://127.0.0.1:PORT/...``)
        sends the browser back to a local server instead."""
        verifier = _b64(secrets.token_bytes(32))
        challenge = _b64(hashlib.sha256(verifier.encode("ascii")).digest())
        state = _b64(secrets.token_bytes(16))
        redirect = redirect_uri or self.hub_url + AUTH_CODE_PATH
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
                "scope": " ".join(scopes),
            },
            quote_via=quote,
        )
        return PKCEFlow(
            auth_client=self,
            authorize_url=f"{self.hub_url}/authorize?{query}",
            redirect_uri=redirect,
            verifier=verifier,
            state=state,
        )

    def login_out_of_band(
        self,
        ask: Callable[[str], str] = input,
        say: Callable[[str], None] = print,
        scopes: Iterable[str] = (SCOPE_SETUP, SCOPE_TRANSFER),
    ) -> Tokens:
        """``ferry login``'s dialogue: show the URL, read the pasted code."""
        flow = self.start_flow(scopes=scopes)
        say("Login here:")
        say("-----")
        say(flow.authorize_url)
        say("-----")
        return flow.exchange_code(ask("Enter the auth code: "))

    def login_with_loopback(
        self,
        open_browser: Callable[[str], Any] = webbrowser.open,
        timeout: float = 300.0,
        scopes: Iterable[str] = (SCOPE_SETUP, SCOPE_TRANSFER),
    ) -> Tokens:
        """Logs in with a redirect to a one-shot server on 127.0.0.1.

        ``open_browser(url)`` is called with the authorize URL (the default
        opens the system's browser); the browser ends at this process, which
        trades the code. Raises :class:`LoginError` after ``timeout`` seconds
        without an answer.
        """
        answer: Dict[str, str] = {}
        arrived = threading.Event()
        expected: Dict[str, str] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            # A connection that sends nothing cannot hold the server.
            timeout = 10

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                parts = urlsplit(self.path)
                if parts.path != "/callback" or arrived.is_set():
                    self.send_error(404)
                    return
                # Only the answer to this login ends the wait: anything
                # else on the port (another tab, a scan) is turned away.
                if parse_qs(parts.query).get("state") != [expected.get("state")]:
                    self.send_error(400, "not the answer to this login")
                    return
                answer["url"] = "http://127.0.0.1" + self.path
                arrived.set()
                ok = "error=" not in urlsplit(self.path).query
                text = "You are logged in; you can close this window." if ok else "The login did not finish."
                body = f"<!doctype html><title>ferry</title><p>{html.escape(text)}</p>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        server.timeout = 0.2
        done = threading.Event()

        def serve() -> None:
            while not arrived.is_set() and not done.is_set():
                server.handle_request()

        thread = threading.Thread(target=serve, name="ferry-login-callback", daemon=True)
        try:
            flow = self.start_flow(
                redirect_uri=f"http://127.0.0.1:{server.server_address[1]}/callback", scopes=scopes
            )
            expected["state"] = flow.state
            thread.start()
            open_browser(flow.authorize_url)
            arrived.wait(timeout)
        finally:
            done.set()
            if thread.is_alive():
                thread.join()
            server.server_close()
        if "url" not in answer:
            raise LoginError(f"no login answer arrived within {timeout:g} seconds")
        return flow.exchange_redirect(answer["url"])

    def refresh(self, refresh_token: str) -> Tokens:
        """New tokens for a refresh token. The hub rotates refresh tokens:
        keep the new one; the old one is spent (using it again ends the
        grant)."""
        return self._token(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            }
        )


class ConfidentialAppAuthClient(_AuthClient):
    """A client with a secret: a portal (``ferry app create NAME --type
    portal --redirect-uri URI``), which acts for the users who consent,
    or a service account (``--type service``, or an admin's ``ferry-hub
    client add``), which acts as itself with client credentials.

    A portal sends its user to :meth:`authorize_url`, trades the code the
    hub sends back with :meth:`exchange_code`, keeps the refresh token on
    its own side and later calls :meth:`refresh` (the hub rotates refresh
    tokens: keep the newest)."""

    def __init__(
        self,
        hub_url: str,
        client_id: str,
        client_secret: str,
        *,
        ca_file: CAFile = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: Optional[requests.Session] = None,
    ) -> None:
        super().__init__(hub_url, ca_file=ca_file, timeout=timeout, session=session)
        self.client_id = client_id
        self._secret = client_secret

    def __repr__(self) -> str:
        return f"ConfidentialAppAuthClient({self.hub_url!r}, {self.client_id!r}, client_secret=...)"

    def _client_headers(self) -> Dict[str, str]:
        # RFC 6749 §2.3.1: each part form-encoded before Basic.
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}

    def client_credentials_tokens(self, scopes: Optional[Sequence[str]] = None) -> Tokens:
        form = {"grant_type": "client_credentials"}
        if scopes:
            form["scope"] = " ".join(scopes)
        return self._token(form)

    def authorize_url(self, redirect_uri: str, scopes: Iterable[str], state: str) -> str:
        """Where to send the user's browser to sign in and consent.
        ``redirect_uri`` must be one the app was registered with; ``state``
        is the caller's own unguessable value, to check on the way back."""
        if not state:
            raise LoginError("a sign-in needs a state: an unguessable value kept until the answer")
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(scopes),
                "state": state,
            },
            quote_via=quote,
        )
        return f"{self.hub_url}/authorize?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> Tokens:
        """Trades the code the hub sent to ``redirect_uri`` for tokens."""
        code = code.strip()
        if not code:
            raise LoginError("no auth code given")
        return self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    def refresh(self, refresh_token: str) -> Tokens:
        """New tokens for a refresh token. The old one is spent: keep the
        new one (using a spent one again ends the whole grant)."""
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})


class Authorizer:
    """Gives each request its ``Authorization`` header."""

    def authorization_header(self) -> str:
        raise NotImplementedError

    def handle_unauthorized(self) -> bool:
        """The hub said 401: get a new token if possible; ``True`` means
        try the request once more."""
        return False


class AccessTokenAuthorizer(Authorizer):
    """A fixed access token (``FERRY_TOKEN``, ``ferry-hub token create``)."""

    def __init__(self, access_token: str) -> None:
        self.access_token = access_token

    def __repr__(self) -> str:
        return "AccessTokenAuthorizer(...)"

    def authorization_header(self) -> str:
        return f"Bearer {self.access_token}"


class _RenewingAuthorizer(Authorizer):
    def __init__(
        self,
        tokens: Optional[Tokens],
        on_refresh: Optional[Callable[[Tokens], None]],
        min_lifetime: float,
    ) -> None:
        self.tokens = tokens
        self.on_refresh = on_refresh
        self.min_lifetime = min_lifetime
        self._lock = threading.Lock()

    def _renew(self) -> Tokens:
        raise NotImplementedError

    def _renewed(self) -> None:
        self.tokens = self._renew()
        if self.on_refresh is not None:
            self.on_refresh(self.tokens)

    def authorization_header(self) -> str:
        with self._lock:
            if self.tokens is None or self.tokens.expires_within(self.min_lifetime):
                self._renewed()
            assert self.tokens is not None
            return f"Bearer {self.tokens.access_token}"

    def handle_unauthorized(self) -> bool:
        with self._lock:
            try:
                self._renewed()
            except FerryAPIError:
                return False
            return True


class RefreshTokenAuthorizer(_RenewingAuthorizer):
    """Tokens from a native-app login, refreshed when the access token is
    about to expire (or the hub refuses it). Refresh tokens rotate: each
    refresh calls ``on_refresh(tokens)`` with the new ones, to save."""

    def __init__(
        self,
        auth_client: NativeAppAuthClient,
        tokens: Tokens,
        on_refresh: Optional[Callable[[Tokens], None]] = None,
        min_lifetime: float = _MIN_LIFETIME,
    ) -> None:
        if not tokens.refresh_token:
            raise ValueError("these tokens have no refresh_token; use AccessTokenAuthorizer")
        super().__init__(tokens, on_refresh, min_lifetime)
        self.auth_client = auth_client

    def __repr__(self) -> str:
        return f"RefreshTokenAuthorizer({self.auth_client.hub_url!r}, ...)"

    def _renew(self) -> Tokens:
        assert self.tokens is not None and self.tokens.refresh_token
        return self.auth_client.refresh(self.tokens.refresh_token)


class ClientCredentialsAuthorizer(_RenewingAuthorizer):
    """A confidential client's tokens, fetched again when they expire."""

    def __init__(
        self,
        auth_client: ConfidentialAppAuthClient,
        scopes: Optional[Sequence[str]] = None,
        tokens: Optional[Tokens] = None,
        on_refresh: Optional[Callable[[Tokens], None]] = None,
        min_lifetime: float = _MIN_LIFETIME,
    ) -> None:
        super().__init__(tokens, on_refresh, min_lifetime)
        self.auth_client = auth_client
        self.scopes = scopes

    def __repr__(self) -> str:
        return f"ClientCredentialsAuthorizer({self.auth_client.client_id!r}, ...)"

    def _renew(self) -> Tokens:
        return self.auth_client.client_credentials_tokens(self.scopes)
