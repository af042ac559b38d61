"""The App and its task. The task reads the note by id: it exists, because it was enqueued on commit."""

from asyncq import App

app = App()  # Redis from $ASYNCQ_REDIS_URL


@app.task(name="notes.announce", queue="notes")
async def announce(note_id: int) -> str:
    from notes.models import Note

    note = await Note.objects.aget(id=note_id)  # Django's async ORM
    note.announced = True
    await note.asave(update_fields=["announced"])
    return f"announced note {note.id}: {note.text!r}"
