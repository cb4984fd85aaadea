"""SSO tokens and a trusted proxy beside API keys: a real identity provider's endpoints on loopback
(OIDC discovery + JWKS, keys this test makes and rotates), real PyJWT signatures, and — in the slow
test — a real `ragtune serve` whose search results follow the token's groups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2 as httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ragtune.serve.identity import Authenticator, OidcConfig, ProxyConfig
from ragtune.serve.keys import KeyStore

AUD = "ragtune-test"


class Provider:
    """An identity provider as the server sees one: discovery and a JWKS that can be rotated."""

    def __init__(self):
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.add_key("k1")
        self.login = {"email": "ana@example.com", "groups": ["eng"]}  # who signs in at /authorize
        self.codes: dict[str, dict] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from urllib.parse import parse_qs, urlencode, urlsplit

                url = urlsplit(self.path)
                if url.path == "/authorize":  # the user is already signed in here: straight back with a code
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    code = base64.urlsafe_b64encode(os.urandom(12)).decode()
                    provider.codes[code] = q
                    self.send_response(302)
                    self.send_header("location", q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]}))
                    self.end_headers()
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks",
                            "authorization_endpoint": provider.issuer + "/authorize",
                            "token_endpoint": provider.issuer + "/token"}
                elif self.path == "/jwks":
                    provider.fetches += 1
                    body = provider.jwks()
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):  # /token: the code, once, with the verifier whose S256 is the challenge
                from urllib.parse import parse_qs

                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["content-length"])).decode()).items()}
                asked = provider.codes.pop(form.get("code", ""), None)
                digest = _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                ok = (asked is not None and asked["code_challenge_method"] == "S256" and digest == asked["code_challenge"]
                      and form.get("client_id") == asked["client_id"] and form.get("redirect_uri") == asked["redirect_uri"])
                body = ({"id_token": provider.token(aud=asked["client_id"], **provider.login), "token_type": "Bearer"}
                        if ok else {"error": "invalid_grant"})
                raw = json.dumps(body).encode()
                self.send_response(200 if ok else 400)
                self.send_header("access-control-allow-origin", "*")  # the UI calls it from its own origin
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, kid: str = "k1", key=None, alg: str = "RS256", **claims) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUD, "sub": "u-1", "email": "ana@example.com", "groups": ["eng"],
                "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key if key is not None else self.keys[kid], algorithm=alg, headers={"kid": kid})

    def close(self) -> None:
        self.http.shutdown()


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hmac_with_public_key(provider: Provider, payload: str) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the provider's *public* key."""
    pem = provider.keys["k1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    signed = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{payload}"
    return f"{signed}.{_b64(hmac.new(pem, signed.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def provider():
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def keys(tmp_path):
    store = KeyStore(tmp_path)
    yield store
    store.close()


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_providers_token_names_the_user_groups_and_role(provider, keys):
    auth = Authenticator(keys, OidcConfig(issuer=provider.issuer, audience=AUD, user_claim="email", admin_groups=["ops"]))
    who, why = auth.identify_or_reason(_bearer(provider.token()), "127.0.0.1")
    assert why == "" and (who.user, who.groups, who.role) == ("ana@example.com", ("eng",), "user")
    admin = auth.identify(_bearer(provider.token(groups=["eng", "ops"])), None)
    assert admin.is_admin and admin.principal.groups == ("eng", "ops")
    nested = Authenticator(keys, OidcConfig(issuer=provider.issuer, audience=AUD, groups_claim="realm_access.roles"))
    assert nested.identify(_bearer(provider.token(realm_access={"roles": ["hr"]})), None).groups == ("hr",)
    secret, _ = keys.create("bo", groups=["finance"])
    assert auth.identify(_bearer(secret), None).user == "bo"  # API keys keep working beside tokens


def test_every_kind_of_bad_token_is_refused_with_its_reason(provider, keys):
    auth = Authenticator(keys, OidcConfig(issuer=provider.issuer, audience=AUD, leeway_s=0))
    now = int(time.time())
    good = provider.token()
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    bad = {
        "expired": (provider.token(exp=now - 60, iat=now - 600), "expired"),
        "not yet valid": (provider.token(nbf=now + 600), "not yet valid"),
        "wrong audience": (provider.token(aud="someone-else"), "audience"),
        "wrong issuer": (provider.token(iss="http://evil.example"), "issuer"),
        "no expiry": (provider.token(exp=None), "exp"),
        "unknown kid": (provider.token(kid="nope", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                        "does not publish"),
        "alg none": (f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{payload}.", "'none' is not accepted"),
        "tampered payload": (f"{header}.{_b64({**claims, 'groups': ['hr']})}.{signature}", "Signature verification failed"),
        "public key as HMAC secret": (_hmac_with_public_key(provider, payload), "'HS256' is not accepted"),
        "signed by another key under a known kid": (provider.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
                                                    "Signature verification failed"),
    }
    assert auth.identify(_bearer(good), None) is not None  # the probe: the same provider accepts a good one
    for name, (token, reason) in bad.items():
        who, why = auth.identify_or_reason(_bearer(token), None)
        assert who is None, name
        assert why.startswith("identity token refused") and reason.lower() in why.lower(), (name, why)


def test_a_rotated_key_is_fetched_once_and_made_up_key_ids_do_not_hammer_the_provider(provider, keys):
    auth = Authenticator(keys, OidcConfig(issuer=provider.issuer, audience=AUD, jwks_min_refresh_s=0.5))
    assert auth.identify(_bearer(provider.token()), None) is not None
    assert provider.fetches == 1
    assert auth.identify(_bearer(provider.token()), None) is not None and provider.fetches == 1  # cached
    time.sleep(0.6)
    provider.add_key("k2")  # the provider rotates: new tokens carry the new kid
    del provider.keys["k1"]
    assert auth.identify(_bearer(provider.token(kid="k2")), None) is not None
    assert provider.fetches == 2
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for i in range(20):  # made-up kids, back to back: at most one refetch per min_refresh_s
        assert auth.identify(_bearer(provider.token(kid=f"x{i}", key=stranger)), None) is None
    assert provider.fetches <= 3


def test_proxy_headers_are_believed_only_from_the_proxy(keys):
    auth = Authenticator(keys, proxy=ProxyConfig(trusted=["10.0.0.0/8", "::1"], admin_groups=["ops"]))
    headers = {"x-forwarded-user": "cy", "x-forwarded-groups": "hr, ops"}
    who = auth.identify(headers, "10.9.8.7")
    assert (who.user, who.groups, who.is_admin) == ("cy", ("hr", "ops"), True)
    assert auth.identify(headers, "::1").user == "cy"
    for peer in ("192.168.1.2", "127.0.0.1", None, "testclient"):
        assert auth.identify(headers, peer) is None, peer
    with pytest.raises(ValueError, match="proxy.trusted"):
        ProxyConfig(trusted=["not-an-address"])
    with pytest.raises(ValueError, match="asymmetric"):
        OidcConfig(issuer="http://x", audience="a", algorithms=["HS256"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a real server process and the real embedder
def test_the_tokens_groups_decide_what_search_sees_through_the_real_server(provider, tmp_path):
    store = KeyStore(tmp_path)
    admin_key = store.create("root", role="admin")[0]
    store.close()
    auth_file = tmp_path / "auth.yaml"
    auth_file.write_text(f"oidc:\n  issuer: {provider.issuer}\n  audience: {AUD}\n  user_claim: email\n"
                         "proxy:\n  trusted: [127.0.0.1/32]\n")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port), "--auth-config", str(auth_file)],
                            env={**os.environ, "RAGTUNE_HOME": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"server did not start:\n{proc.stdout.read()}")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as adm:
            assert adm.post("/v1/collections", json={"name": "docs"}).status_code == 201
            docs = [{"id": "pay", "text": "Salaries are paid on the last working day of the month.",
                     "acl": {"groups": ["finance"]}},
                    {"id": "leave", "text": "Employees get 25 days of paid leave a year.", "acl": {"public": True}}]
            job = adm.post("/v1/collections/docs/documents", json={"documents": docs}).json()["job"]["id"]
            for _ in range(600):
                if adm.get(f"/v1/jobs/{job}").json()["status"] in ("done", "failed"):
                    break
                time.sleep(0.1)

        def seen(headers: dict[str, str], local: str = "127.0.0.1") -> tuple[int, set[str]]:
            with httpx.Client(base_url=url, headers=headers, timeout=60,
                              transport=httpx.HTTPTransport(local_address=local)) as c:
                r = c.post("/v1/collections/docs/search", json={"query": "when are salaries paid", "k": 5})
                return r.status_code, {h["doc_id"] for h in r.json().get("hits", [])}

        fin = {"Authorization": f"Bearer {provider.token(groups=['finance'])}"}
        eng = {"Authorization": f"Bearer {provider.token(groups=['eng'])}"}
        assert seen(fin) == (200, {"pay", "leave"})
        assert seen(eng) == (200, {"leave"})
        assert seen({"Authorization": f"Bearer {provider.token(aud='other')}"})[0] == 401
        with httpx.Client(base_url=url, headers=fin) as c:
            assert c.get("/v1/me").json()["user"] == "ana@example.com"
        proxied = {"X-Forwarded-User": "dee", "X-Forwarded-Groups": "finance"}
        assert seen(proxied) == (200, {"pay", "leave"})  # from the trusted proxy's address
        assert seen(proxied, local="127.0.0.2")[0] == 401  # the same headers from elsewhere: not believed
        assert seen({**proxied, "X-Forwarded-For": "127.0.0.1"}, local="127.0.0.2")[0] == 401
        assert httpx.get(url + "/auth/config").json()["oidc"]["client_id"] == AUD  # public: the UI reads it first
        _sso_in_the_browser(url, provider)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _sso_in_the_browser(url: str, provider: Provider) -> None:
    """The web UI signs in through the provider (authorization code + PKCE) and searches as the
    token's groups allow; a second user with other groups sees less."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("CI"):
            raise AssertionError("CI must install Debian's chromium and chromium-driver (see .ci/run)")
        return
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    for login, expected in ((["finance"], "Salaries are paid"), (["eng"], None)):
        provider.login = {"email": f"{login[0]}@example.com", "groups": login}
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        # The sign-in navigates away to the provider and back; an element read while Chrome swaps the
        # document fails with a transient inspector error ("Node ... does not belong to the document"),
        # so the waits retry it. A real failure still ends in a TimeoutException.
        wait = WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,))
        try:
            driver.get(url + "/")
            wait.until(EC.element_to_be_clickable((By.ID, "sso"))).click()
            wait.until(EC.text_to_be_present_in_element((By.ID, "who"), f"{login[0]}@example.com"))
            assert "code=" not in driver.current_url  # the single-use code left the address bar
            wait.until(lambda d: "docs" in [o.text for o in Select(d.find_element(By.ID, "collection")).options])
            driver.find_element(By.ID, "search-q").send_keys("when are salaries paid")
            driver.find_element(By.ID, "search-btn").click()
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .hit")))
            results = driver.find_element(By.ID, "results").text
            if expected:
                assert expected in results
            else:
                assert "Salaries are paid" not in results and "25 days" in results
        finally:
            driver.quit()
