"""Who may read the dashboard and who may act on it.

* **No auth configured**: only local requests are answered (client address and ``Host`` header both
  loopback; the ``Host`` check stops DNS-rebinding pages). ``asyncq dashboard`` refuses to bind to anything
  but a loopback address without auth (``check_bind``).
* **A token** (``Authorization: Bearer <token>``; a browser opens ``/?token=<token>`` once and gets an
  HttpOnly, SameSite=Strict session cookie) or **basic auth** (user and password): every endpoint needs it.
* **Actions** (pause, resume, retry, purge, abort) are POST/DELETE only and, unless the caller authenticates
  with a bearer token (which a browser never sends by itself), need the ``X-CSRF-Token`` header with the
  token from ``GET /api/session``. Another site cannot read that token (same-origin policy, no CORS) nor send
  a custom header cross-origin, so a forged form or fetch from another page is refused. A present ``Origin``
  must also match the ``Host``.

Secrets are compared in constant time. The per-process key that signs sessions and CSRF tokens is random, so a
restart logs browsers out; nothing is stored in Redis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from asyncq.exceptions import ConfigurationError

SESSION_COOKIE = "asyncq_session"
CSRF_HEADER = "X-CSRF-Token"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class DashboardAuth:
    """How users prove who they are. Leave both unset for a local-only dashboard."""

    token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.basic_user is None) != (self.basic_password is None):
            raise ConfigurationError("basic auth needs both a user and a password (--basic-auth user:password)")
        if self.token is not None and len(self.token) < 16:
            raise ConfigurationError("the dashboard token must be at least 16 characters; e.g. `openssl rand -hex 24`")

    def __repr__(self) -> str:  # never show a secret
        return f"DashboardAuth(token={'***' if self.token else None}, basic_user={self.basic_user!r})"

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.basic_user is not None

    @classmethod
    def from_env(cls, token: str | None = None, basic: str | None = None) -> DashboardAuth:
        """``ASYNCQ_DASHBOARD_TOKEN`` and ``ASYNCQ_DASHBOARD_BASIC_AUTH`` (``user:password``); arguments win."""
        token = token or os.environ.get("ASYNCQ_DASHBOARD_TOKEN") or None
        basic = basic or os.environ.get("ASYNCQ_DASHBOARD_BASIC_AUTH") or None
        user = password = None
        if basic is not None:
            user, sep, password = basic.partition(":")
            if not sep or not user or not password:
                raise ConfigurationError("basic auth is given as user:password")
        return cls(token=token, basic_user=user, basic_password=password)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: DashboardAuth) -> None:
    """Refuse to serve on a non-loopback address without auth (what ``asyncq dashboard`` calls first)."""
    if not is_loopback(host) and not auth.enabled:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without authentication: anyone who reaches it could "
            "retry, purge and pause. Give --token (or ASYNCQ_DASHBOARD_TOKEN) or --basic-auth user:password, "
            "or bind to 127.0.0.1"
        )


class Guard:
    """The checks above, bound to one dashboard's auth settings and signing key."""

    def __init__(self, auth: DashboardAuth) -> None:
        self.auth = auth
        self._key = secrets.token_bytes(32)

    def _sign(self, what: str) -> str:
        return hmac.new(self._key, what.encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        return self._sign("session:" + (self.auth.token or ""))

    def login(self, token: str) -> bool:
        return self.auth.token is not None and hmac.compare_digest(token.encode(), self.auth.token.encode())

    def identity(self, request: Request) -> str | None:
        """Who this is ("bearer", "session", "basic:<user>", "local"), or None if not allowed at all."""
        if not self.auth.enabled:
            client = request.client.host if request.client else ""
            host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
            return "local" if is_loopback(client) and is_loopback(host) else None
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.auth.token and scheme.lower() == "bearer" and self.login(value.strip()):
            return "bearer"
        if self.auth.basic_user and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            ok_user = hmac.compare_digest(user.encode(), self.auth.basic_user.encode())
            ok_pw = hmac.compare_digest(password.encode(), (self.auth.basic_password or "").encode())
            return f"basic:{user}" if ok_user and ok_pw else None
        cookie = request.cookies.get(SESSION_COOKIE)
        if self.auth.token and cookie and hmac.compare_digest(cookie, self.session_value()):
            return "session"
        return None

    def csrf_token(self, identity: str) -> str:
        return self._sign("csrf:" + identity)

    async def require_read(self, request: Request) -> str:
        who = self.identity(request)
        if who is None:
            if not self.auth.enabled:
                raise HTTPException(403, "this dashboard has no authentication configured, so it answers "
                                         "local requests only; configure a token or basic auth")
            headers = {"WWW-Authenticate": 'Basic realm="asyncq"'} if self.auth.basic_user else None
            raise HTTPException(401, "authentication required: a bearer token, basic auth, or open "
                                     "/?token=... once in the browser", headers=headers)
        return who

    async def require_action(self, request: Request) -> str:
        who = await self.require_read(request)
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, f"cross-origin request refused (Origin {origin})")
        if who != "bearer":
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), self.csrf_token(who).encode()):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header; get it from GET /api/session")
        return who
