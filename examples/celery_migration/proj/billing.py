"""Not migrated: only the Celery workers import this module (the asyncq app does not include it)."""

from proj.celery_app import app
from proj.settings import runtime


@app.task(name="billing.charge")
def charge(order_id: int, cents: int) -> dict[str, str]:
    return {"ran_on": runtime(), "result": f"order {order_id} charged {cents / 100:.2f} EUR"}
