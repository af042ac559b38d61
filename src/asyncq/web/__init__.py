"""The dashboard and REST API (a FastAPI ``APIRouter``), and the stand-alone server of ``asyncq dashboard``."""

from asyncq.web.router import Dashboard as Dashboard
from asyncq.web.router import dashboard_router as dashboard_router
from asyncq.web.security import DashboardAuth as DashboardAuth
from asyncq.web.server import create_dashboard_app as create_dashboard_app
from asyncq.web.server import server as server

__all__ = ["Dashboard", "DashboardAuth", "create_dashboard_app", "dashboard_router", "server"]
