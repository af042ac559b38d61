"""``asyncq dashboard``: serve the dashboard, the REST API and ``/metrics`` with uvicorn."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from asyncq.broker import redact
from asyncq.cli._common import AppPath, Namespace, RedisUrl, cli, err, fail, make_app
from asyncq.exceptions import ConfigurationError


@cli.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs --token or --basic-auth.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8787,
    token: Annotated[
        str | None,
        typer.Option(help="Require this bearer token (default: $ASYNCQ_DASHBOARD_TOKEN). Browsers open /?token=... "
                          "once.", show_default=False),
    ] = None,
    basic_auth: Annotated[
        str | None,
        typer.Option("--basic-auth", metavar="USER:PASSWORD",
                     help="Require HTTP basic auth (default: $ASYNCQ_DASHBOARD_BASIC_AUTH).", show_default=False),
    ] = None,
    app_path: AppPath = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Serve the web dashboard and REST API (queues, workers, jobs, dead letters, periodic tasks, /metrics).

    Give --app to see the App's periodic tasks and to decode its serializer's payloads.
    """
    from asyncq.web import DashboardAuth, server  # imported late: the other commands need no web stack

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = make_app(redis_url, app_path, namespace)
    try:
        auth = DashboardAuth.from_env(token=token, basic=basic_auth)
        srv = server(application, host=host, port=port, auth=auth, log_level=log_level.lower())
    except ConfigurationError as exc:
        fail(str(exc), 2)
    err.print(f"asyncq dashboard on {redact(application.settings.redis_url)}: http://{host}:{port}/",
              style="dim", markup=False, soft_wrap=True)
    srv.run()
