"""Imported first by the asyncq test worker (``$ASYNCQ_TESTING_PRELOAD``): the runner's shims, and the stand-in
alias when the test process uses it (ASYNCQ_SUITE_ALIAS_STANDIN=1)."""

import os

from compat.celery_suite import alias, shims

shims.install()
if os.environ.get("ASYNCQ_SUITE_ALIAS_STANDIN") == "1":
    alias.install()
else:
    import asyncq.compat

    getattr(asyncq.compat, "install_as_celery")()  # noqa: B009 - absent in asyncq before issue #13
    alias.fill_gaps()
