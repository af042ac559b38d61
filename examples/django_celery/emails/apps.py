from django.apps import AppConfig


class EmailsConfig(AppConfig):
    name = "emails"

    def ready(self):
        from emails import receivers  # noqa: F401  (connects the Celery signal receivers)
