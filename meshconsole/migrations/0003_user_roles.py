"""Roles (meshconsole.roles). Existing staff and superusers become admins, so
the bootstrap admin keeps every right it had in v1; everyone else a viewer."""

import django.db.models.deletion
from django.conf import settings
from typing import Any

from django.db import migrations, models


def existing_users_get_roles(apps: Any, schema_editor: Any) -> None:
    user_model = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    user_role = apps.get_model("meshconsole", "UserRole")
    for user in user_model.objects.all():
        admin = user.is_staff or user.is_superuser
        user_role.objects.get_or_create(
            user=user, defaults={"role": "admin" if admin else "viewer"}
        )


class Migration(migrations.Migration):

    dependencies = [
        ('meshconsole', '0002_api_tokens_from_authtoken'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='UserRole',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('viewer', 'Viewer'), ('operator', 'Operator'), ('admin', 'Admin')], default='viewer', max_length=16)),
                ('scope', models.CharField(blank=True, default='', max_length=100)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='mesh_role', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(existing_users_get_roles, migrations.RunPython.noop),
    ]
