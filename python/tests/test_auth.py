"""Logging in: PKCE through the hub's real login and consent pages (out of
band and loopback), refresh-token rotation, client credentials, a CA of
one's own, and what refusals look like."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import ferry_sdk
from ferry_sdk import (
    AuthenticationError,
    ClientCredentialsAuthorizer,
    ConfidentialAppAuthClient,
    FerryClient,
    LoginError,
    NativeAppAuthClient,
    OAuthError,
    RefreshTokenAuthorizer,
    Tokens,
    TransportError,
)

from conftest import sign_in_and_approve, shown_code


def test_pkce_login_out_of_band_through_the_hubs_pages(hub):
    auth = NativeAppAuthClient(hub.url, ca_file=hub.ca)
    flow = auth.start_flow()
    assert flow.authorize_url.startswith(f"{hub.url}/authorize?response_type=code&client_id=ferry-cli&")
    assert "code_challenge_method=S256" in flow.authorize_url
    landed = sign_in_and_approve(hub, flow.authorize_url)
    assert landed.url.startswith(f"{hub.url}/auth/code?")
    tokens = flow.exchange_code(shown_code(landed))
    assert tokens.refresh_token and tokens.expires_at > time.time()
    assert set(tokens.scope.split()) == {"endpoint:setup", "transfer"}
    me = FerryClient(hub.url, tokens.access_token, ca_file=hub.ca).whoami()
    assert me["username"] == hub.user

    # A code is good once: the replay is refused as RFC 6749 says.
    with pytest.raises(OAuthError) as refused:
        flow.exchange_code(shown_code(landed))
    assert refused.value.code == "invalid_grant", refused.value


def test_pkce_login_with_a_loopback_redirect(hub):
    auth = NativeAppAuthClient(hub.url, ca_file=hub.ca)
    ended = {}

    def browser(url: str) -> None:
        assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in url
        # A request that is not this login's answer does not end the wait.
        callback = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        stray = requests.get(callback + "?code=forged&state=not-this-login", timeout=10)
        assert stray.status_code == 400
        # The browser ends at the SDK's one-shot server, which answers it.
        ended["page"] = sign_in_and_approve(hub, url)

    tokens = auth.login_with_loopback(open_browser=browser, timeout=60, scopes=["transfer"])
    assert "logged in" in ended["page"].text
    assert tokens.scope == "transfer"
    assert FerryClient(hub.url, tokens.access_token, ca_file=hub.ca).whoami()["username"] == hub.user


def test_a_denied_loopback_login_raises_login_error(hub):
    auth = NativeAppAuthClient(hub.url, ca_file=hub.ca)
    with pytest.raises(LoginError, match="denied"):
        auth.login_with_loopback(
            open_browser=lambda url: sign_in_and_approve(hub, url, decision="deny"), timeout=60
        )


def test_refresh_tokens_rotate_and_the_authorizer_saves_the_new_ones(hub):
    auth = NativeAppAuthClient(hub.url, ca_file=hub.ca)
    flow = auth.start_flow()
    tokens = flow.exchange_code(shown_code(sign_in_and_approve(hub, flow.authorize_url)))

    # An access token about to expire is refreshed before use.
    saved = []
    stale = Tokens(**{**tokens.to_dict(), "expires_at": time.time() - 1})
    authorizer = RefreshTokenAuthorizer(auth, stale, on_refresh=saved.append)
    client = FerryClient(hub.url, authorizer, ca_file=hub.ca)
    assert client.whoami()["username"] == hub.user
    assert len(saved) == 1
    fresh = saved[0]
    assert fresh.refresh_token and fresh.refresh_token != tokens.refresh_token
    assert fresh.access_token != tokens.access_token
    assert Tokens.from_dict(fresh.to_dict()) == fresh

    # A token the hub refuses (here: revoked) is refreshed once and the
    # request retried.
    auth.revoke(fresh.access_token, "access_token")
    authorizer.tokens = Tokens(**{**fresh.to_dict(), "expires_at": time.time() + 3600})
    assert client.whoami()["username"] == hub.user
    assert len(saved) == 2

    # The spent refresh token is refused.
    with pytest.raises(OAuthError) as refused:
        auth.refresh(tokens.refresh_token)
    assert refused.value.code == "invalid_grant"
    assert refused.value.status == 400


def test_client_credentials_act_as_the_clients_user(hub):
    confidential = ConfidentialAppAuthClient(hub.url, hub.client_id, hub.client_secret, ca_file=hub.ca)
    assert hub.client_secret not in repr(confidential)
    got = []
    authorizer = ClientCredentialsAuthorizer(confidential, on_refresh=got.append)
    client = FerryClient(hub.url, authorizer, ca_file=hub.ca)
    assert client.whoami()["username"] == hub.user
    ids = {e["id"] for e in client.endpoint_search()}
    assert {hub.src, hub.dst} <= ids
    assert len(got) == 1 and got[0].refresh_token is None

    wrong = ConfidentialAppAuthClient(hub.url, hub.client_id, "not-the-secret", ca_file=hub.ca)
    with pytest.raises(OAuthError) as refused:
        wrong.client_credentials_tokens()
    assert (refused.value.status, refused.value.code) == (401, "invalid_client")

    # The built-in public client has no secret and no client_credentials.
    public = ConfidentialAppAuthClient(hub.url, ferry_sdk.CLI_CLIENT_ID, "x", ca_file=hub.ca)
    with pytest.raises(OAuthError) as refused:
        public.client_credentials_tokens()
    assert refused.value.code == "invalid_client"


def test_a_bad_token_is_an_authentication_error(hub):
    client = FerryClient(hub.url, "not-a-token", ca_file=hub.ca)
    with pytest.raises(AuthenticationError) as refused:
        client.whoami()
    error = refused.value
    assert error.status == 401
    assert error.code and error.message
    assert isinstance(error, ferry_sdk.FerryAPIError)


def test_the_hubs_ca_is_needed_to_trust_it(hub):
    untrusting = FerryClient(hub.url, hub.token)
    with pytest.raises(TransportError, match="ca_file"):
        untrusting.whoami()
    with pytest.raises(ValueError, match="CA file"):
        FerryClient(hub.url, hub.token, ca_file="/nonexistent/ca.crt")
    with pytest.raises(ValueError, match="https"):
        FerryClient(hub.url.replace("https://", "http://"), hub.token)


def test_an_unreachable_hub_is_a_transport_error(hub):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FerryClient(f"https://127.0.0.1:{port}", hub.token, ca_file=hub.ca, timeout=5)
    with pytest.raises(TransportError, match="cannot reach"):
        client.whoami()


def test_the_paste_the_code_dialogue_and_a_narrow_scope(hub):
    auth = NativeAppAuthClient(hub.url, ca_file=hub.ca)
    said = []

    def ask(prompt: str) -> str:
        assert prompt == "Enter the auth code: "
        # The person opens the URL shown between the rules and pastes the code.
        assert said[:2] == ["Login here:", "-----"] and said[3] == "-----"
        return shown_code(sign_in_and_approve(hub, said[2])) + "\n"

    tokens = auth.login_out_of_band(ask=ask, say=said.append, scopes=[ferry_sdk.SCOPE_SETUP])
    assert tokens.scope == ferry_sdk.SCOPE_SETUP
    # A token without the transfer scope may not submit: 403 with the
    # hub's word for it.
    client = FerryClient(hub.url, tokens.access_token, ca_file=hub.ca)
    with pytest.raises(ferry_sdk.PermissionDeniedError) as refused:
        client.transfer(hub.src, hub.dst, [("/~/a", "/~/b")])
    assert (refused.value.status, refused.value.code) == (403, "insufficient_scope")
