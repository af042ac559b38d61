from django.db import transaction
from django.http import HttpRequest, JsonResponse

from shop.models import Order
from shop.tasks import process_order, record


def create_order(request: HttpRequest) -> JsonResponse:
    """A sync view: the order and its task in one transaction; the task is sent when it commits."""
    with transaction.atomic():
        order = Order.objects.create(item=request.GET.get("item", "book"))
        result = process_order.enqueue(order.pk)
    return JsonResponse({"result_id": result.id, "order_id": order.pk})


async def record_async(request: HttpRequest) -> JsonResponse:
    result = await record.aenqueue(request.GET["label"])
    return JsonResponse({"result_id": result.id})
