"""The dashboard as one FastAPI ``APIRouter``: the page, its static files, the REST API and ``/metrics``.

    from fastapi import FastAPI
    from asyncq.web import DashboardAuth, dashboard_router

    api = FastAPI()
    api.include_router(dashboard_router(app, auth=DashboardAuth(token="...")), prefix="/asyncq")

The router is built around the App it is given (dependency injection by construction: no global App, no
settings module to configure), so one process can mount dashboards of several Apps.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from asyncq.web.api import api_router, metrics_router
from asyncq.web.data import RateMeter
from asyncq.web.security import SESSION_COOKIE, DashboardAuth, Guard

if TYPE_CHECKING:
    from asyncq.app import App

_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}


class Dashboard:
    """What the endpoints share: the App, the auth guard and the rate meter."""

    def __init__(self, app: App, auth: DashboardAuth | None = None) -> None:
        self.app = app
        self.guard = Guard(auth or DashboardAuth())
        self.meter = RateMeter()


def _asset(name: str) -> bytes:
    return resources.files("asyncq.web").joinpath("static", name).read_bytes()


def dashboard_router(app: App, auth: DashboardAuth | None = None) -> APIRouter:
    """The whole dashboard for ``app``; include it with any prefix. ``auth=None``: local requests only."""
    dash = Dashboard(app, auth)
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def index(request: Request, token: str | None = None) -> Response:
        if token is not None:  # a browser logging in with the token once: swap it for a session cookie
            if not dash.guard.login(token):
                raise HTTPException(401, "wrong token")
            target = request.url.path
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(SESSION_COOKIE, dash.guard.session_value(), httponly=True, samesite="strict",
                                path=target, secure=request.url.scheme == "https")
            return response
        await dash.guard.require_read(request)
        return HTMLResponse(_asset("index.html"), headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                       "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        })

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        if name not in _STATIC:
            raise HTTPException(404, "no such file")
        await dash.guard.require_read(request)
        return Response(_asset(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    router.include_router(api_router(dash))
    router.include_router(metrics_router(dash))
    return router
