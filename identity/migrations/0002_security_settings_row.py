"""The SecuritySettings singleton: a new install allows by default (so the demo works)."""

from typing import Any

from django.db import migrations


def create_row(apps: Any, schema_editor: Any) -> None:
    apps.get_model("identity", "SecuritySettings").objects.get_or_create(
        pk=1, defaults={"default_action": "allow"}
    )


class Migration(migrations.Migration):
    dependencies = [("identity", "0001_initial")]
    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
