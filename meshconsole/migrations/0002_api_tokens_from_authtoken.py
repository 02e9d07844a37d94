"""Existing DRF authtoken keys become hashed ApiToken rows, and their plain
copies are deleted: every key that worked keeps working, none stays readable.

rest_framework.authtoken is no longer installed, so its table is read with SQL
when an older install has one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import migrations


def copy_authtoken_keys(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    api_token = apps.get_model("meshconsole", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token = api_token.objects.create(
            user_id=user_id,
            prefix=key[:8],
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            name="migrated from authtoken",
        )
        api_token.objects.filter(pk=token.pk).update(created_at=created)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM authtoken_token")


class Migration(migrations.Migration):
    dependencies = [("meshconsole", "0001_initial")]

    operations = [migrations.RunPython(copy_authtoken_keys, migrations.RunPython.noop)]
