from django.apps import AppConfig


class MeshconsoleConfig(AppConfig):
    name = "meshconsole"
    verbose_name = "meshconsole"
