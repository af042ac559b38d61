from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.tasks import default_task_backend

from newsletter.models import Subscriber
from newsletter.tasks import count_subscribers, send_welcome


def subscribe(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():  # the task is sent when this commits, never if it rolls back
        subscriber = Subscriber.objects.create(email=request.GET["email"])
        result = send_welcome.enqueue(subscriber.pk)
    return JsonResponse({"result_id": result.id})


async def stats(request: HttpRequest) -> JsonResponse:
    result = await count_subscribers.aenqueue()
    return JsonResponse({"result_id": result.id})


def result(request: HttpRequest, rid: str) -> JsonResponse:
    r = default_task_backend.get_result(rid)
    body = {"status": r.status, "worker_ids": r.worker_ids}
    if r.is_finished and not r.errors:
        body["return_value"] = r.return_value
    return JsonResponse(body)
