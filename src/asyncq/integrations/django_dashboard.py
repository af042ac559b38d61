"""The asyncq dashboard inside a Django project, behind Django's own login (staff only by default).

    # urls.py
    from django.urls import include, path
    from asyncq.integrations.django_dashboard import dashboard_urls

    urlpatterns = [
        path("asyncq/", include(dashboard_urls())),   # the TASKS backend's Redis; or dashboard_urls(app=my_app)
        ...
    ]

Every request under the prefix goes through Django's middleware first (sessions, authentication, your own),
then this view asks Django who the user is:

- anonymous: the page redirects to the login page (``login_url``, default ``settings.LOGIN_URL``; use
  ``login_url="admin:login"`` for the admin's), its API and static files answer 403;
- signed in but not allowed (``allow(user)``, default: an active staff user): 403;
- allowed: the request is handed to the dashboard (the same FastAPI app as ``asyncq dashboard``, called
  in-process as an ASGI app, without a socket); ``allow_actions(user)`` (default: ``allow``) also decides the
  actions (pause, resume, retry, purge, abort: every method but GET and HEAD).

Why the dashboard's own checks stay on: the view hands the request over with a per-process secret as basic auth
(after removing the client's ``Authorization`` and ``Cookie`` headers), so the dashboard still demands its
``X-CSRF-Token`` header on actions, which another site cannot send. That is why the view is exempt from Django's
CSRF middleware (the page's scripts do not send Django's token) without being open to forged requests.

Django served by ASGI (uvicorn, daphne, hypercorn) runs the dashboard on the server's event loop and keeps one
Redis connection pool. Under WSGI it works too (Django runs the async view in a short event loop per request),
with a connection opened and closed per request.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import resolve_url
from django.urls import URLPattern, re_path

from asyncq.app import App
from asyncq.web.security import DashboardAuth
from asyncq.web.server import create_dashboard_app

log = logging.getLogger("asyncq.django_dashboard")

UserCheck = Callable[[Any], bool]
_DASHBOARD_USER = "django"
_DROPPED_HEADERS = {"authorization", "cookie", "content-length"}


def is_staff(user: Any) -> bool:
    """The default rule: an active staff user (as Django's admin requires)."""
    return bool(user.is_active and user.is_staff)


class DjangoDashboard:
    """One mounted dashboard: the App it shows, who may see it, and the dashboard app requests are handed to.

    ``app``: the asyncq App to show; default: the ``AsyncqBackend``'s (``backend``: its alias in ``TASKS``,
    default the only one). Resolved on the first request, so ``urls.py`` never touches Redis or settings.
    """

    def __init__(self, app: App | None = None, *, backend: str | None = None, allow: UserCheck = is_staff,
                 allow_actions: UserCheck | None = None, login_url: str | None = None) -> None:
        if app is not None and backend is not None:
            raise ImproperlyConfigured("dashboard_urls() takes app= or backend=, not both")
        self._app = app
        self.backend = backend
        self.allow = allow
        self.allow_actions = allow_actions or allow
        self.login_url = login_url
        self._password = secrets.token_urlsafe(32)
        self._asgi: Any = None

    # --- the dashboard -----------------------------------------------------------------------------------
    @property
    def app(self) -> App:
        if self._app is None:
            from asyncq.integrations.django_backend import asyncq_backend

            self._app = asyncq_backend(self.backend).app
        return self._app

    def asgi(self) -> Any:
        """The dashboard's ASGI app (built once: its CSRF tokens and rate meter live as long as the process)."""
        if self._asgi is None:
            auth = DashboardAuth(basic_user=_DASHBOARD_USER, basic_password=self._password)
            self._asgi = create_dashboard_app(self.app, auth)
        return self._asgi

    @property
    def urls(self) -> list[URLPattern]:
        """For ``include()``: every path under the prefix."""

        async def asyncq_dashboard(request: HttpRequest, subpath: str = "") -> HttpResponse:
            return await self.view(request, subpath)

        asyncq_dashboard.csrf_exempt = True  # type: ignore[attr-defined]  # the dashboard checks its own token
        return [re_path(r"^(?P<subpath>.*)$", asyncq_dashboard, name="asyncq-dashboard")]

    # --- the view ----------------------------------------------------------------------------------------
    async def view(self, request: HttpRequest, subpath: str = "") -> HttpResponse:
        user = await _user(request)
        if not user.is_authenticated:
            if subpath == "" and request.method in ("GET", "HEAD"):
                return self._to_login(request)
            return JsonResponse({"detail": "sign in to Django first"}, status=403)
        acting = request.method not in ("GET", "HEAD")
        if not await sync_to_async(self.allow_actions if acting else self.allow)(user):
            what = "act on" if acting else "see"
            return JsonResponse({"detail": f"user {user.get_username()!r} may not {what} the asyncq dashboard"},
                                status=403)
        response = await self._forward(request, subpath)
        if not isinstance(request, ASGIRequest):  # WSGI: this event loop ends with the request
            await self.app.close()
        return response

    def _to_login(self, request: HttpRequest) -> HttpResponse:
        login = urlsplit(resolve_url(self.login_url or django_settings.LOGIN_URL))
        query = QueryDict(login.query, mutable=True)
        query["next"] = request.get_full_path()
        return HttpResponseRedirect(urlunsplit(login._replace(query=query.urlencode(safe="/"))))

    async def _forward(self, request: HttpRequest, subpath: str) -> HttpResponse:
        """Call the dashboard's ASGI app with this request; its answer as a Django response."""
        root = request.path[: len(request.path) - len(subpath)].rstrip("/")
        path = f"{root}/{subpath}"
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()
                   if k.lower() not in _DROPPED_HEADERS]
        headers.append((b"authorization", b"Basic " + _basic(_DASHBOARD_USER, self._password)))
        body = request.body
        headers.append((b"content-length", str(len(body)).encode()))
        host, port = request.get_host(), request.get_port()
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": request.method, "scheme": request.scheme, "path": path, "raw_path": path.encode(),
            "root_path": root, "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"),
            "headers": headers, "client": (request.META.get("REMOTE_ADDR") or "", 0),
            "server": (host.rsplit(":", 1)[0], int(port)), "state": {},
        }
        sent = False
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.asgi()(scope, receive, send)
        except Exception:
            if not start:
                raise
            log.exception("the asyncq dashboard failed on %s %s (answered %s)", request.method, path, start["status"])
        response = HttpResponse(b"".join(chunks), status=start["status"])
        for name, value in start.get("headers", []):
            key = name.decode("latin-1")
            if key.lower() not in ("content-length", "set-cookie"):
                response[key] = value.decode("latin-1")
        return response


def _basic(user: str, password: str) -> bytes:
    return base64.b64encode(f"{user}:{password}".encode())


async def _user(request: HttpRequest) -> Any:
    """The request's user, loaded off the event loop (it may query the database)."""
    auser = getattr(request, "auser", None)
    if auser is not None:  # Django >= 5.0
        return await auser()
    if not hasattr(request, "user"):
        raise ImproperlyConfigured(
            "the asyncq dashboard uses Django's authentication: add "
            "'django.contrib.sessions.middleware.SessionMiddleware' and "
            "'django.contrib.auth.middleware.AuthenticationMiddleware' to MIDDLEWARE"
        )
    return await sync_to_async(lambda: (request.user.is_authenticated, request.user)[1])()


def dashboard_urls(app: App | None = None, *, backend: str | None = None, allow: UserCheck = is_staff,
                   allow_actions: UserCheck | None = None, login_url: str | None = None) -> list[URLPattern]:
    """URL patterns for ``path("asyncq/", include(dashboard_urls(...)))``; see the module docstring."""
    return DjangoDashboard(app, backend=backend, allow=allow, allow_actions=allow_actions, login_url=login_url).urls


__all__ = ["DjangoDashboard", "dashboard_urls", "is_staff"]
