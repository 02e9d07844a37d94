from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the Celery tasks with the app in every process, not only in a
        # worker that ran autodiscovery (beat's schedule names them).
        from policies import tasks  # noqa: F401
