"""Not migrated yet, but portable: plain Python that both runtimes can run. The asyncq app registers the same
function under the same name (proj/celery_asyncq.py), so a call may run on either side: that is what a canary
(strategy A) and a shared queue (strategy B) need."""

import time

from proj.celery_app import app
from proj.settings import runtime


@app.task(name="reports.render")
def render(report_id: int) -> dict[str, str]:
    time.sleep(0.05)  # some work
    return {"ran_on": runtime(), "result": f"report {report_id} rendered"}
