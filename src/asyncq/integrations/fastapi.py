"""FastAPI: open the App's Redis connection with the web app, and enqueue from handlers.

    from fastapi import FastAPI
    from asyncq.integrations.fastapi import AsyncqApp, lifespan

    api = FastAPI(lifespan=lifespan(app))              # connects at start-up (fails fast), closes at shutdown

    @api.post("/signup")
    async def signup(user_id: int, tasks: AsyncqApp) -> dict[str, str]:
        job = await tasks.enqueue("emails.send_welcome", user_id)   # one Redis round trip, never waits for a worker
        return {"job": job.job_id}

``lifespan(app)`` puts the App in the lifespan state, so handlers receive it through the ``AsyncqApp``
dependency instead of importing a global; tests can hand in another App with ``dependency_overrides``.
Enqueueing costs one round trip however long the queue is and whether or not a worker runs; ``await
job.result(timeout=...)`` in a handler waits for the result without polling (pub/sub) and gives up on time.
``lifespan(app, dashboard="/asyncq")`` also mounts the dashboard (local requests only unless ``auth`` is given).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from asyncq.app import App
from asyncq.exceptions import ConfigurationError
from asyncq.web.security import DashboardAuth

STATE_KEY = "asyncq_app"

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def lifespan(
    app: App, *, dashboard: str | None = None, auth: DashboardAuth | None = None, inner: Lifespan | None = None
) -> Lifespan:
    """A FastAPI lifespan: pings Redis at start-up (so a wrong URL fails the deploy, not the first request),
    provides ``app`` to handlers (``AsyncqApp``), closes its connections at shutdown. ``inner``: your own
    lifespan, run inside this one; ``dashboard``: a path to mount the dashboard at."""

    @asynccontextmanager
    async def run(web: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if dashboard is not None:
            from asyncq.web import dashboard_router

            web.include_router(dashboard_router(app, auth), prefix=dashboard.rstrip("/"))
        await app.ping()
        try:
            if inner is None:
                yield {STATE_KEY: app}
            else:
                async with inner(web) as state:
                    yield {**(state or {}), STATE_KEY: app}
        finally:
            await app.close()

    return run


def get_app(request: Request) -> App:
    """The App that ``lifespan(app)`` provides (the ``AsyncqApp`` dependency)."""
    app = getattr(request.state, STATE_KEY, None)
    if not isinstance(app, App):
        raise ConfigurationError(
            "no asyncq App in this request's state: create the FastAPI app with "
            "FastAPI(lifespan=asyncq.integrations.fastapi.lifespan(app))"
        )
    return app


#: a handler parameter annotated ``AsyncqApp`` receives the App
AsyncqApp = Annotated[App, Depends(get_app)]

__all__ = ["AsyncqApp", "get_app", "lifespan"]
