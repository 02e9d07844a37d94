from django.apps import AppConfig


class MeshconsoleConfig(AppConfig):
    name = "meshconsole"
    verbose_name = "meshconsole"

    def ready(self) -> None:
        # Tasks sent from this process go through our Celery app (broker, queue).
        # Registers the failed-login receiver (meshconsole.lockout).
        from meshconsole import (
            celery,  # noqa: F401
            lockout,  # noqa: F401
        )
