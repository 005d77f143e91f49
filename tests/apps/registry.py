"""A container-image registry's site, as a third party would write it on
ferry: a portal app (``ferry app create NAME --type portal``) that sends
its user through the hub's sign-in and consent, keeps the refresh token on
its own side, and later, with the user long gone, sends an image from the
registry's endpoint to one of the user's endpoints.

Run by tests/tests/registry_app.rs, configured by the environment:
REGISTRY_PORT, FERRY_HUB_URL, FERRY_HUB_CA, REGISTRY_CLIENT_ID,
REGISTRY_CLIENT_SECRET, REGISTRY_REDIRECT_URI, REGISTRY_SOURCE_ENDPOINT
(the endpoint the image is on) and REGISTRY_IMAGE (its path there).

Routes: ``/login`` (to the hub), ``/callback`` (the code traded for
tokens), ``/send?user=NAME&to=ENDPOINT&as=FILE`` (JSON: the task's id and
end status, or the hub's refusal).
"""

import os
import secrets
import threading

from flask import Flask, abort, jsonify, redirect, request

from ferry_sdk import ConfidentialAppAuthClient, FerryClient, FerryError, OAuthError

HUB = os.environ["FERRY_HUB_URL"].rstrip("/")
CA = os.environ["FERRY_HUB_CA"]
CLIENT_ID = os.environ["REGISTRY_CLIENT_ID"]
CLIENT_SECRET = os.environ["REGISTRY_CLIENT_SECRET"]
REDIRECT_URI = os.environ["REGISTRY_REDIRECT_URI"]
SOURCE = os.environ["REGISTRY_SOURCE_ENDPOINT"]
IMAGE = os.environ["REGISTRY_IMAGE"]
SCOPES = ["openid", "my-endpoints", "shared-with-me", "transfer", "offline_access"]

app = Flask(__name__)
# Server-side state: the states of sign-ins under way, and each user's
# refresh token (the hub rotates them: the newest replaces the old).
lock = threading.Lock()
pending = set()
refresh_tokens = {}
hub_auth = ConfidentialAppAuthClient(HUB, CLIENT_ID, CLIENT_SECRET, ca_file=CA)


@app.get("/login")
def login():
    state = secrets.token_urlsafe(24)
    with lock:
        pending.add(state)
    return redirect(hub_auth.authorize_url(REDIRECT_URI, SCOPES, state))


@app.get("/callback")
def callback():
    state = request.args.get("state", "")
    with lock:
        known = state in pending
        pending.discard(state)
    if not known:
        abort(400, "unknown sign-in state: start again at /login")
    if "error" in request.args:
        return f"not linked: {request.args['error']}", 403
    try:
        tokens = hub_auth.exchange_code(request.args.get("code", ""), REDIRECT_URI)
    except FerryError as e:
        return f"the hub refused the code: {e}", 502
    if tokens.refresh_token is None:
        return "the hub gave no refresh token (offline_access not granted)", 502
    who = FerryClient(HUB, tokens.access_token, ca_file=CA).whoami()
    user = who["username"]
    with lock:
        refresh_tokens[user] = tokens.refresh_token
    return f"registry linked to {user}"


@app.get("/send")
def send():
    user = request.args.get("user", "")
    with lock:
        refresh = refresh_tokens.get(user)
    if refresh is None:
        return jsonify(error="not_linked"), 404
    try:
        tokens = hub_auth.refresh(refresh)
    except OAuthError as e:
        return jsonify(error=e.code, message=str(e)), 401
    with lock:
        refresh_tokens[user] = tokens.refresh_token or refresh
    ferry = FerryClient(HUB, tokens.access_token, ca_file=CA)
    try:
        reachable = list(ferry.endpoint_search(filter_scope="my-endpoints"))
        reachable += list(ferry.endpoint_search(filter_scope="shared-with-me"))
        by_name = {e["display_name"]: e["id"] for e in reachable}
        ids = set(by_name.values())
        to = by_name.get(request.args.get("to", ""))
        source = by_name.get(SOURCE, SOURCE if SOURCE in ids else None)
        if to is None or source is None:
            return jsonify(error="no_endpoint", endpoints=sorted(by_name)), 404
        name = request.args.get("as", "image")
        task_id = ferry.transfer(source, to, [(IMAGE, f"/~/{name}")], label="registry pull")
        task = ferry.wait_task(task_id, timeout=120)
    except FerryError as e:
        return jsonify(error="hub", message=str(e)), 502
    return jsonify(task_id=task_id, status=task["status"])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["REGISTRY_PORT"]), threaded=True)
