"""The Standard Webhooks library (PyPI `standardwebhooks`), unchanged, verifies Plaza's webhooks.

Run by scripts/test as `python standard_webhooks.py http://127.0.0.1:PORT` against a fresh
`plaza serve`. It stands up a webhook receiver on a loopback port, registers a developer,
an app (with that receiver as its webhook URL) and a paying user through Plaza's API,
signs the user in with S256 PKCE, takes a client-credentials token, creates a pay order,
confirms it as the user, refunds part of it, and checks that both webhooks
(`payment.succeeded`, `refund.succeeded`) verify with `standardwebhooks.Webhook` under the
app's `webhook_secret`, and that a tampered body does not. If the library disagrees with
Plaza, Plaza is wrong.

Exits 1 on any failure, after saying which.
"""

import base64
import hashlib
import http.server
import json
import secrets
import sys
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import requests
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

BASE = sys.argv[1].rstrip("/")
API = BASE + "/api/v1"
REDIRECT_URI = "http://127.0.0.1:9/callback"
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = min(int(self.headers.get("content-length", "0")), 1 << 16)
        received.append((dict(self.headers.items()), self.rfile.read(length).decode()))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/webhooks"


def call(method, path, token=None, **options):
    headers = options.pop("headers", {})
    if token:
        headers["Authorization"] = "Bearer " + token
    reply = requests.request(method, API + path, headers=headers, timeout=30, **options)
    if reply.status_code >= 300:
        raise AssertionError(f"{method} {path}: {reply.status_code} {reply.text}")
    return reply.json() if reply.text else None


def register(username):
    body = {"username": username, "password": "password-" + username, "display_name": username.title()}
    return call("POST", "/auth/register", json=body)["token"]


def wait_for(count):
    deadline = time.time() + 30
    while len(received) < count:
        if time.time() > deadline:
            raise AssertionError(f"only {len(received)} of {count} webhooks arrived")
        time.sleep(0.05)


developer = register("whdev")
user = register("whann")
call("POST", "/wallet/topups", user, json={"amount": 5000, "currency": "USD"}, headers={"Idempotency-Key": "t1"})
app = call(
    "POST",
    "/miniapps",
    developer,
    json={
        "name": "Webhook Coffee",
        "home_url": "http://127.0.0.1:9/",
        "redirect_uris": [REDIRECT_URI],
        "webhook_url": WEBHOOK_URL,
        "scopes": ["openid", "payments"],
    },
)
client = (app["client_id"], app["client_secret"])

verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
answer = call(
    "POST",
    "/oauth/authorize",
    user,
    json={
        "client_id": app["client_id"],
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid payments",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "approve": True,
    },
)
code = dict(parse_qsl(urlsplit(answer["redirect_to"]).query))["code"]
fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
tokens = requests.post(API + "/oauth/token", data=fields, auth=client, timeout=30).json()
sub = call("GET", "/oauth/userinfo", tokens["access_token"])["sub"]
fields = {"grant_type": "client_credentials", "scope": "payments"}
app_token = requests.post(API + "/oauth/token", data=fields, auth=client, timeout=30).json()["access_token"]

order = call(
    "POST",
    "/pay/orders",
    app_token,
    json={"out_trade_no": "W-1", "user_sub": sub, "amount": 450, "currency": "USD", "description": "Latte"},
    headers={"Idempotency-Key": "o1"},
)
call("POST", f"/pay/orders/{order['id']}/confirm", user, json={})
call("POST", f"/pay/orders/{order['id']}/refunds", app_token, json={"amount": 50}, headers={"Idempotency-Key": "r1"})
wait_for(2)

webhook = Webhook(app["webhook_secret"])
types = []
for headers, body in received:
    headers = {name.lower(): value for name, value in headers.items()}
    event = webhook.verify(body, headers)
    assert event["data"]["order_id"] == order["id"], event
    types.append(event["type"])
    try:
        webhook.verify(body.replace("450", "451").replace("50", "51"), headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("a tampered body verified")
assert sorted(types) == ["payment.succeeded", "refund.succeeded"], types
print(f"PASS standardwebhooks verified {len(received)} Plaza webhooks and refused their tampered copies")
