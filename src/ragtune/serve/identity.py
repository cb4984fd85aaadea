"""Who is calling: an API key, an identity provider's token (OIDC / JWT), or a trusted proxy's
headers, each turned into the same :class:`~ragtune.serve.keys.KeyInfo` (user, groups, role), so
every route and every ACL sees one kind of caller.

- **API keys** (``rt_...``) always work.
- **OIDC tokens** (``Authorization: Bearer <JWT>``, when ``oidc`` is configured): the signature is
  checked against the issuer's JWKS (discovered from ``<issuer>/.well-known/openid-configuration``
  unless ``jwks_url`` is given, cached, refetched when a token names a key it has not seen: the
  provider rotated its keys), then issuer, audience, expiry and not-before. Claims give the user
  and the groups (the ACL); ``admin_groups`` give the admin role. Only asymmetric algorithms are
  accepted, so ``alg: none`` and a public key used as an HMAC secret are refused.
- **A trusted proxy** (oauth2-proxy style, when ``proxy`` is configured): the user and groups
  headers are believed only from the configured proxy addresses; from anyone else they are ignored.

Signature checking is PyJWT's (a well-kept library); what is written here is the JWKS cache,
because PyJWKClient refetches the key set on *every* unknown ``kid``, which would let anyone make
the server hammer the identity provider with made-up key ids.

Example:
    >>> import tempfile
    >>> from ragtune.serve.keys import KeyStore
    >>> keys = KeyStore(tempfile.mkdtemp())
    >>> secret, _ = keys.create("ana", groups=["eng"])
    >>> who = Authenticator(keys, proxy=ProxyConfig(trusted=["10.0.0.0/8"]))
    >>> who.identify({"authorization": f"Bearer {secret}"}, "127.0.0.1").user
    'ana'
    >>> who.identify({"x-forwarded-user": "bo", "x-forwarded-groups": "hr,ops"}, "10.1.2.3").groups
    ('hr', 'ops')
    >>> who.identify({"x-forwarded-user": "bo"}, "192.168.0.9") is None  # not the proxy: ignored
    True
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import threading
import time
import urllib.request
from typing import Any, Callable

from pydantic import BaseModel, Field, field_validator

from ragtune.serve.keys import KeyInfo, KeyStore

log = logging.getLogger("ragtune.serve.identity")
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcConfig(BaseModel):
    issuer: str = Field(description="the provider's issuer URL, exactly as its tokens' `iss` claim says it")
    audience: str = Field(description="this server's client id / audience, as the tokens' `aud` claim holds it")
    jwks_url: str | None = Field(None, description="the key set's URL; default: discovered from the issuer")
    user_claim: str = Field("sub", description="the claim that names the user (e.g. email, preferred_username)")
    groups_claim: str = Field("groups", description="the claim holding the groups; dots reach into objects "
                                                    "(realm_access.roles)")
    admin_groups: list[str] = Field(default_factory=list, description="groups whose members get the admin role")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    leeway_s: float = Field(30, ge=0, description="clock skew allowed on exp / nbf")
    jwks_cache_s: float = Field(600, gt=0, description="how long a fetched key set is trusted before refetching")
    jwks_min_refresh_s: float = Field(30, ge=0, description="unknown key ids refetch the key set at most this often")
    # The UI's sign-in (authorization code + PKCE, a public client): the client id it asks the
    # provider for; default: the audience, which is what most providers put in `aud`.
    ui_client_id: str | None = None
    ui_scope: str = "openid profile email"

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        bad = [a for a in algorithms if a not in ASYMMETRIC]
        if bad or not algorithms:
            raise ValueError(f"oidc.algorithms: {bad or 'empty'} not allowed; use asymmetric ones of {', '.join(ASYMMETRIC)}")
        return algorithms


class ProxyConfig(BaseModel):
    trusted: list[str] = Field(description="addresses or networks (CIDR) of the proxy whose headers are believed")
    user_header: str = "x-forwarded-user"
    groups_header: str = "x-forwarded-groups"
    admin_groups: list[str] = Field(default_factory=list)

    @field_validator("trusted")
    @classmethod
    def _networks(cls, trusted: list[str]) -> list[str]:
        for t in trusted:
            try:
                ipaddress.ip_network(t, strict=False)
            except ValueError:
                raise ValueError(f"proxy.trusted: {t!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)")
        if not trusted:
            raise ValueError("proxy.trusted: name at least one proxy address")
        return trusted


class TokenRefused(Exception):
    """A token that looked like a JWT but is not one this server accepts; the message says why."""


def _fetch_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (an https/http URL from config)
        return json.loads(r.read())


class KeySet:
    """The provider's signing keys by ``kid``, cached, refetched on expiry and (rate-limited) when a
    token names a key the cache does not have. A failed refetch keeps the keys it had."""

    def __init__(self, url: Callable[[], str], cache_s: float, min_refresh_s: float,
                 fetch: Callable[[str], dict] = _fetch_json):
        self._url, self._cache_s, self._min_refresh_s, self._fetch = url, cache_s, min_refresh_s, fetch
        self._keys: dict[str | None, Any] = {}
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def key(self, kid: str | None):
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched > self._cache_s
            unknown = kid not in self._keys and now - self._fetched > self._min_refresh_s
            if stale or unknown:
                self._refresh(now)
            if kid is None and len(self._keys) == 1:  # a token without kid, a provider with one key
                return next(iter(self._keys.values()))
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        from jwt import PyJWKSet

        self._fetched = now
        try:
            keys = PyJWKSet.from_dict(self._fetch(self._url())).keys
        except Exception as e:  # noqa: BLE001 (network, JSON, a set with no usable key: keep what we had)
            log.warning("could not refresh the identity provider's keys (%s); keeping %d cached", e, len(self._keys))
            return
        self._keys = {k.key_id: k for k in keys if k.public_key_use in (None, "sig")}


def _claim(claims: dict, path: str):
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _groups(value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(sorted({str(g).strip() for g in value if str(g).strip() and "," not in str(g)}))


def _handle(*parts: str) -> str:
    """A stable public id for an identity that has no API key (logs and job owners name it)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


NO_CALLER = "a valid API key or identity token is required (Authorization: Bearer <key or token>)"


def presented_secret(headers: dict[str, str]) -> str:
    """The bearer credential, else the X-API-Key header, else "" (``headers`` lower-cased)."""
    auth = headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get("x-api-key", "").strip()


def looks_like_jwt(secret: str) -> bool:
    return secret.count(".") == 2 and not secret.startswith("rt_")


class OidcVerifier:
    def __init__(self, config: OidcConfig, fetch: Callable[[str], dict] = _fetch_json):
        self.config, self._fetch = config, fetch
        self._jwks_url = config.jwks_url
        self._ui: dict | None = None
        self.keys = KeySet(self.jwks_url, config.jwks_cache_s, config.jwks_min_refresh_s, fetch)

    def discovery(self) -> dict:
        return self._fetch(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")

    def ui_config(self) -> dict:
        """What the web UI needs to sign in through the provider (authorization code + PKCE, a
        public client: no secret in the page): its endpoints from discovery, the client id."""
        if self._ui is None:
            found = self.discovery()
            missing = [k for k in ("authorization_endpoint", "token_endpoint") if not isinstance(found.get(k), str)]
            if missing:
                raise ValueError(f"the provider's discovery document names no {', '.join(missing)}")
            self._ui = {"authorization_endpoint": found["authorization_endpoint"], "token_endpoint": found["token_endpoint"],
                        "client_id": self.config.ui_client_id or self.config.audience, "scope": self.config.ui_scope}
        return self._ui

    def jwks_url(self) -> str:
        if self._jwks_url is None:
            url = self.discovery().get("jwks_uri")
            if not isinstance(url, str):
                raise ValueError(f"{self.config.issuer}/.well-known/openid-configuration names no jwks_uri; "
                                 "set oidc.jwks_url")
            self._jwks_url = url
        return self._jwks_url

    def verify(self, token: str) -> KeyInfo:
        import jwt

        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenRefused(f"not a readable token ({e})")
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise TokenRefused(f"algorithm {alg!r} is not accepted")
        key = self.keys.key(header.get("kid"))
        if key is None:
            raise TokenRefused("signed by a key the identity provider does not publish")
        if key.algorithm_name and key.algorithm_name != alg:
            raise TokenRefused(f"the key is for {key.algorithm_name}, the token says {alg}")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=cfg.audience, issuer=cfg.issuer,
                                leeway=cfg.leeway_s, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as e:
            raise TokenRefused(str(e))
        user = _claim(claims, cfg.user_claim)
        if not isinstance(user, str) or not user.strip():
            raise TokenRefused(f"the token has no {cfg.user_claim!r} claim to name its user")
        groups = _groups(_claim(claims, cfg.groups_claim))
        role = "admin" if set(groups) & set(cfg.admin_groups) else "user"
        return KeyInfo(id="sso-" + _handle(cfg.issuer, str(claims.get("sub", user))), user=user.strip(), groups=groups,
                       role=role, created=float(claims.get("iat", 0) or 0))


class Authenticator:
    """One place that turns a request's headers (and its peer address) into a caller, or None."""

    def __init__(self, keys: KeyStore, oidc: OidcConfig | None = None, proxy: ProxyConfig | None = None,
                 fetch: Callable[[str], dict] = _fetch_json):
        self.keys, self.proxy = keys, proxy
        self.oidc = OidcVerifier(oidc, fetch) if oidc else None
        self._proxies = [ipaddress.ip_network(t, strict=False) for t in proxy.trusted] if proxy else []

    def identify(self, headers: dict[str, str], client: str | None) -> KeyInfo | None:
        return self.identify_or_reason(headers, client)[0]

    def identify_or_reason(self, headers: dict[str, str], client: str | None) -> tuple[KeyInfo | None, str]:
        """(caller, "") or (None, why): ``headers`` lower-cased, ``client`` the peer's IP address."""
        if self.proxy and self._from_proxy(client) and (user := headers.get(self.proxy.user_header, "").strip()):
            groups = _groups(headers.get(self.proxy.groups_header, ""))
            role = "admin" if set(groups) & set(self.proxy.admin_groups) else "user"
            return KeyInfo(id="proxy-" + _handle(user), user=user, groups=groups, role=role, created=0.0), ""
        secret = presented_secret(headers)
        if not secret:
            return None, NO_CALLER
        if self.oidc and looks_like_jwt(secret):
            try:
                return self.oidc.verify(secret), ""
            except TokenRefused as e:
                return None, f"identity token refused: {e}"
        info = self.keys.lookup(secret)
        return (info, "") if info else (None, NO_CALLER)

    def needs_network(self, headers: dict[str, str]) -> bool:
        """Whether identifying this request may fetch the provider's keys (run it off the event loop)."""
        return self.oidc is not None and looks_like_jwt(presented_secret(headers))

    def _from_proxy(self, client: str | None) -> bool:
        try:
            addr = ipaddress.ip_address(client or "")
        except ValueError:
            return False
        return any(addr in net for net in self._proxies)
