"""``python -m compat.celery_suite``: see compat/celery_suite/run.py."""

from compat.celery_suite.run import main

raise SystemExit(main())
