"""The stand-alone dashboard: a FastAPI app around ``dashboard_router`` and the uvicorn server of
``asyncq dashboard``."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from asyncq._version import __version__
from asyncq.broker import redact
from asyncq.web.router import dashboard_router
from asyncq.web.security import DashboardAuth, check_bind

if TYPE_CHECKING:
    from asyncq.app import App

log = logging.getLogger("asyncq.dashboard")
_SECRET_QUERY = re.compile(r"(token=)[^&\s\"]+")


def create_dashboard_app(app: App, auth: DashboardAuth | None = None) -> FastAPI:
    """A FastAPI app serving the dashboard at ``/``, the API at ``/api``, ``/metrics``, ``/openapi.json``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await app.close()

    api = FastAPI(
        title="asyncq dashboard",
        version=__version__,
        description="Queues, workers, jobs, dead letters and periodic tasks of one asyncq App.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.include_router(dashboard_router(app, auth))
    return api


class _RedactQuery(logging.Filter):
    """Keep ``?token=...`` (a browser's one-time login) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def server(app: App, host: str = "127.0.0.1", port: int = 8787, auth: DashboardAuth | None = None,
           log_level: str = "info", **uvicorn_options: Any) -> uvicorn.Server:
    """A uvicorn server for the dashboard; refuses a non-loopback ``host`` without auth (ConfigurationError)."""
    auth = auth or DashboardAuth()
    check_bind(host, auth)
    logging.getLogger("uvicorn.access").addFilter(_RedactQuery())
    config = uvicorn.Config(create_dashboard_app(app, auth), host=host, port=port, log_level=log_level,
                            server_header=False, **uvicorn_options)
    log.info("asyncq dashboard for %s at http://%s:%d/ (auth: %s)", redact(app.settings.redis_url), host, port,
             "on" if auth.enabled else "off, local only")
    return uvicorn.Server(config)
