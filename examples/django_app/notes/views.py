import json

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, JsonResponse

from asyncq.integrations.django import enqueue_on_commit
from notes.models import Note
from notes.tasks import announce


def _create(text: str) -> int:
    with transaction.atomic():
        note = Note.objects.create(text=text)
        enqueue_on_commit(announce, note.id)  # sent to Redis only if this block commits
        if "forbidden" in text:
            raise ValueError("rejected after the insert: the transaction rolls back, no job is enqueued")
    return note.id


async def create_note(request: HttpRequest) -> JsonResponse:
    """An async view; the ORM transaction runs in sync_to_async, as Django requires."""
    text = json.loads(request.body)["text"]
    try:
        note_id = await sync_to_async(_create)(text)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=422)
    return JsonResponse({"id": note_id}, status=201)
