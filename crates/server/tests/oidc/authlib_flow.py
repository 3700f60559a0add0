"""An off-the-shelf OpenID Connect client against a live Plaza: Authlib (PyPI), unchanged.

Run by scripts/test as `python authlib_flow.py http://127.0.0.1:PORT` against a fresh
`plaza serve`. It registers a developer, an app and a user through Plaza's API, then does
what any relying party does with Authlib: discovery, the authorization code flow with
S256 PKCE (the user's consent is given by POST /api/v1/oauth/authorize with the user's
bearer token, as Plaza's consent screen does), the token exchange with
client_secret_basic, id_token validation against the JWKS with Authlib's JOSE (signature,
iss, aud, exp, iat, nonce), userinfo, a refresh (rotated), client credentials with
client_secret_post, and revocation. If Authlib disagrees with Plaza, Plaza is wrong.

Prints one line per check and a closing `N passed, N failed`; exits 1 on any failure.
"""

import sys
import traceback
import warnings
from urllib.parse import parse_qsl, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

with warnings.catch_warnings():
    # authlib.jose is deprecated in favour of joserfc but is still Authlib's own JOSE.
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

BASE = sys.argv[1].rstrip("/")
API = BASE + "/api/v1"
REDIRECT_URI = "http://127.0.0.1:9/callback"
results = {"passed": 0, "failed": 0}


def check(name):
    def run(function):
        try:
            function()
        except Exception:  # a failed check is reported, and the next one still runs
            results["failed"] += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            results["passed"] += 1
            print(f"PASS {name}")
        return function

    return run


def register(username):
    reply = requests.post(
        API + "/auth/register",
        json={"username": username, "password": "password-" + username, "display_name": username.title()},
        timeout=30,
    )
    reply.raise_for_status()
    return reply.json()["token"]


developer = register("authlib_dev")
user = register("authlib_ann")
app = requests.post(
    API + "/miniapps",
    headers={"Authorization": "Bearer " + developer},
    json={
        "name": "Authlib Coffee",
        "home_url": "http://127.0.0.1:9/",
        "redirect_uris": [REDIRECT_URI],
        "scopes": ["openid", "profile", "payments"],
    },
    timeout=30,
)
app.raise_for_status()
CLIENT_ID = app.json()["client_id"]
CLIENT_SECRET = app.json()["client_secret"]
state = {}


@check("discovery names Plaza's endpoints and what it supports")
def discovery():
    metadata = requests.get(BASE + "/.well-known/openid-configuration", timeout=30).json()
    assert metadata["issuer"] == BASE, metadata
    assert "S256" in metadata["code_challenge_methods_supported"], metadata
    assert "EdDSA" in metadata["id_token_signing_alg_values_supported"], metadata
    state["metadata"] = metadata


def session(**options):
    return OAuth2Session(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI, **options)


@check("the code flow with S256 PKCE gives tokens and an id_token")
def code_flow():
    metadata = state["metadata"]
    client = session(scope="openid profile", code_challenge_method="S256")
    verifier = generate_token(64)
    nonce = generate_token(20)
    url, sent_state = client.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    # The browser is sent on to Plaza's consent screen with the request's parameters.
    page = requests.get(url, allow_redirects=False, timeout=30)
    assert page.status_code == 302, (page.status_code, page.text)
    consent = urlsplit(page.headers["location"])
    assert consent.path == "/consent", page.headers["location"]
    params = dict(parse_qsl(consent.query))
    assert params["state"] == sent_state and params["code_challenge_method"] == "S256", params
    # The consent screen answers for the signed-in user.
    answer = requests.post(
        metadata["authorization_endpoint"],
        headers={"Authorization": "Bearer " + user},
        json={**params, "approve": True},
        timeout=30,
    )
    answer.raise_for_status()
    redirect_to = answer.json()["redirect_to"]
    assert redirect_to.startswith(REDIRECT_URI + "?"), redirect_to
    token = client.fetch_token(
        metadata["token_endpoint"], authorization_response=redirect_to, code_verifier=verifier
    )
    assert token["token_type"].lower() == "bearer" and token["expires_in"] > 0, token
    assert "refresh_token" in token and "id_token" in token, token
    state.update(client=client, token=token, nonce=nonce)


@check("the id_token verifies against the JWKS with Authlib's JOSE, nonce echoed")
def id_token():
    metadata = state["metadata"]
    keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=30).json())
    claims = jwt.decode(
        state["token"]["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": metadata["issuer"]}},
        claims_params={"nonce": state["nonce"], "client_id": CLIENT_ID},
    )
    claims.validate()
    assert claims["aud"] == CLIENT_ID and claims["nonce"] == state["nonce"], dict(claims)
    assert claims["auth_time"] <= claims["iat"] < claims["exp"], dict(claims)
    state["sub"] = claims["sub"]


@check("userinfo answers the same sub, the union_id and the profile")
def userinfo():
    info = state["client"].get(state["metadata"]["userinfo_endpoint"]).json()
    assert info["sub"] == state["sub"], info
    assert info["name"] == "Authlib_Ann" and info["union_id"], info


@check("a refresh rotates the refresh token and the new access token works")
def refresh():
    client, old = state["client"], state["token"]
    new = client.refresh_token(state["metadata"]["token_endpoint"])
    assert new["access_token"] != old["access_token"], new
    assert new["refresh_token"] != old["refresh_token"], new
    info = client.get(state["metadata"]["userinfo_endpoint"]).json()
    assert info["sub"] == state["sub"], info
    # The old refresh token is spent: reusing it is refused, and revokes the family.
    stale = session(token={"access_token": "x", "refresh_token": old["refresh_token"], "token_type": "Bearer"})
    try:
        stale.refresh_token(state["metadata"]["token_endpoint"])
    except OAuthError as error:
        assert error.error == "invalid_grant", error
    else:
        raise AssertionError("a reused refresh token was accepted")
    reply = client.get(state["metadata"]["userinfo_endpoint"])
    assert reply.status_code == 401, (reply.status_code, reply.text)


@check("client credentials with client_secret_post give an app token; revocation is RFC 7009")
def client_credentials():
    metadata = state["metadata"]
    client = session(token_endpoint_auth_method="client_secret_post")
    token = client.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", scope="payments")
    assert token["scope"] == "payments" and "refresh_token" not in token, token
    revoked = client.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
    assert revoked.status_code == 200, (revoked.status_code, revoked.text)


@check("a wrong code_verifier is invalid_grant")
def wrong_verifier():
    metadata = state["metadata"]
    client = session(scope="openid", code_challenge_method="S256")
    url, _ = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=generate_token(64))
    params = dict(parse_qsl(urlsplit(url).query))
    answer = requests.post(
        metadata["authorization_endpoint"],
        headers={"Authorization": "Bearer " + user},
        json={**params, "approve": True},
        timeout=30,
    ).json()
    try:
        client.fetch_token(
            metadata["token_endpoint"], authorization_response=answer["redirect_to"], code_verifier=generate_token(64)
        )
    except OAuthError as error:
        assert error.error == "invalid_grant", error
    else:
        raise AssertionError("a wrong code_verifier was accepted")


print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
