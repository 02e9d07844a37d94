"""meshconsole: the control plane project package.

The Celery app is loaded by MeshconsoleConfig.ready() in every Django process
(so shared tasks bind to it) and found by `celery -A meshconsole`, not imported
here: importing Celery with DJANGO_SETTINGS_MODULE set imports Django, and
meshconsole.client (the SDK) must not.
"""

from typing import Any

__all__ = ["celery_app"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "celery_app":
        from meshconsole.celery import app

        return app
    raise AttributeError(f"module 'meshconsole' has no attribute {name!r}")
