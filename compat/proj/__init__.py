"""A small Celery project, written once against the Celery API, run under real Celery and under asyncq.compat."""
