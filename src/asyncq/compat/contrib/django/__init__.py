"""Mirror of ``celery.contrib.django`` (Celery 5.4+): ``celery.contrib.django.task.DjangoTask``."""
