"""The test project served by uvicorn (tests/test_django_dashboard.py): ``uvicorn djt_site.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djt_site.settings")
application = get_asgi_application()
