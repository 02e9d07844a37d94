from django.apps import AppConfig


class MeshcodeConfig(AppConfig):
    name = "meshcode"
    verbose_name = "Mesh as code"
    default_auto_field = "django.db.models.BigAutoField"
