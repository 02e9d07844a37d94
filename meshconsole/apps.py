from django.apps import AppConfig


class MeshconsoleConfig(AppConfig):
    name = "meshconsole"
    verbose_name = "meshconsole"

    def ready(self) -> None:
        # Registers the failed-login receiver (meshconsole.lockout).
        from meshconsole import lockout  # noqa: F401
