"""An OpenID Connect code flow against a real ferry hub, driven by authlib
(a standard OIDC client library) from the discovery document alone.

Run by tests/tests/oidc_provider.rs with FERRY_HUB_URL, FERRY_HUB_CA,
FERRY_USER, FERRY_PASSWORD and FERRY_EMAIL in the environment. The user's
part (sign in, approve) is done over HTTP against the hub's own forms,
as a browser would; everything else is authlib's. Prints one JSON object
of what it checked, exits non-zero on any failure.
"""

import json
import os
import secrets
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse, parse_qs

import requests
from authlib.integrations.requests_client import OAuth2Session
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken

HUB = os.environ["FERRY_HUB_URL"]
CA = os.environ["FERRY_HUB_CA"]
USER = os.environ["FERRY_USER"]
PASSWORD = os.environ["FERRY_PASSWORD"]
EMAIL = os.environ["FERRY_EMAIL"]
CLIENT_ID = "ferry-cli"
# Each request names the hub's CA itself: a session's own `verify` loses
# to REQUESTS_CA_BUNDLE in the environment.
# Nothing listens here: the code is read from the redirect's Location.
REDIRECT_URI = "http://127.0.0.1:9/callback"
TIMEOUT = 30


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


class Forms(HTMLParser):
    """Each form's action and its fields (hidden inputs, and submit
    buttons as name -> [values])."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "hidden": [], "buttons": []})
        elif self.forms and tag == "input" and a.get("type") == "hidden":
            self.forms[-1]["hidden"].append((a["name"], a.get("value", "")))
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))


def form(html, action):
    parser = Forms()
    parser.feed(html)
    for f in parser.forms:
        if f["action"] == action:
            return f
    fail(f"no form posting to {action} on the page: {html[:2000]}")


def main():
    discovery = requests.get(
        urljoin(HUB + "/", ".well-known/openid-configuration"), verify=CA, timeout=TIMEOUT
    )
    discovery.raise_for_status()
    meta = discovery.json()
    if meta["issuer"] != HUB:
        fail(f"issuer {meta['issuer']!r} is not the hub's URL {HUB!r}")
    for needed in ("openid", "profile", "email"):
        if needed not in meta["scopes_supported"]:
            fail(f"{needed} not in scopes_supported")
    if "S256" not in meta.get("code_challenge_methods_supported", []):
        fail("S256 not in code_challenge_methods_supported")

    client = OAuth2Session(
        CLIENT_ID,
        scope="openid profile email",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )

    # The user, in a browser of their own: sign in, then approve.
    browser = requests.Session()
    login = browser.get(url, verify=CA, timeout=TIMEOUT, allow_redirects=False)
    if login.status_code != 200:
        fail(f"authorization URL answered {login.status_code}: {login.text[:500]}")
    login_form = form(login.text, "/login")
    fields = dict(login_form["hidden"])
    fields.update(username=USER, password=PASSWORD)
    signed_in = browser.post(
        urljoin(HUB + "/", "login"), data=fields, verify=CA, timeout=TIMEOUT, allow_redirects=False
    )
    if signed_in.status_code != 303:
        fail(f"sign-in answered {signed_in.status_code}: {signed_in.text[:500]}")
    consent = browser.get(
        urljoin(HUB + "/", signed_in.headers["Location"]),
        verify=CA,
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    if consent.status_code != 200:
        fail(f"consent page answered {consent.status_code}: {consent.text[:500]}")
    consent_form = form(consent.text, "/authorize")
    fields = dict(consent_form["hidden"])
    if ("decision", "approve") not in consent_form["buttons"]:
        fail(f"no Approve button: {consent_form}")
    fields["decision"] = "approve"
    approved = browser.post(
        urljoin(HUB + "/", "authorize"), data=fields, verify=CA, timeout=TIMEOUT, allow_redirects=False
    )
    if approved.status_code != 303:
        fail(f"approval answered {approved.status_code}: {approved.text[:500]}")
    callback = approved.headers["Location"]
    if not callback.startswith(REDIRECT_URI + "?"):
        fail(f"redirected to {callback!r}, not the client's redirect URI")
    if "code" not in parse_qs(urlparse(callback).query):
        fail(f"no code in {callback!r}")

    # Back in the client: authlib checks state, redeems the code with PKCE.
    token = client.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        state=state,
        code_verifier=verifier,
        verify=CA,
        timeout=TIMEOUT,
    )
    if "id_token" not in token:
        fail(f"no id_token in the token response: {sorted(token)}")

    jwks = requests.get(meta["jwks_uri"], verify=CA, timeout=TIMEOUT)
    jwks.raise_for_status()
    keys = JsonWebKey.import_key_set(jwks.json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID},
    )
    # iss, aud (= client_id), exp, iat, nonce, auth_time's type, at_hash if any.
    claims.validate(now=int(time.time()), leeway=30)
    for claim, want in (
        ("aud", CLIENT_ID),
        ("nonce", nonce),
        ("preferred_username", USER),
        ("name", USER),
        ("email", EMAIL),
    ):
        if claims.get(claim) != want:
            fail(f"ID token claim {claim} is {claims.get(claim)!r}, not {want!r}")
    if "auth_time" not in claims:
        fail("no auth_time in the ID token")

    # A tampered token must not verify against the same JWKS.
    head, body, sig = token["id_token"].split(".")
    forged = ".".join([head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    try:
        jwt.decode(forged, keys, claims_cls=CodeIDToken).validate()
    except Exception:
        pass
    else:
        fail("a token with a changed signature verified")

    info = client.get(meta["userinfo_endpoint"], verify=CA, timeout=TIMEOUT)
    if info.status_code != 200:
        fail(f"userinfo answered {info.status_code}: {info.text[:500]}")
    info = info.json()
    if info.get("sub") != claims["sub"]:
        fail(f"userinfo sub {info.get('sub')!r} is not the ID token's {claims['sub']!r}")
    if info.get("email") != EMAIL:
        fail(f"userinfo email {info.get('email')!r}")

    print(
        json.dumps(
            {
                "issuer": meta["issuer"],
                "sub": claims["sub"],
                "aud": claims["aud"],
                "nonce_matches": claims["nonce"] == nonce,
                "alg": json.loads(
                    __import__("base64").urlsafe_b64decode(head + "=" * (-len(head) % 4))
                )["alg"],
                "userinfo": info,
            }
        )
    )


if __name__ == "__main__":
    main()
