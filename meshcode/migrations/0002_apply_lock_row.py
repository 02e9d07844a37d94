from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def lock_row(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Made here, not on first use: two first applies must not race to create it.
    apps.get_model("meshcode", "ApplyLock").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("meshcode", "0001_initial")]
    operations = [migrations.RunPython(lock_row, migrations.RunPython.noop)]
