"""Create the role groups (Viewer, Editor, Approver, Operator, Admin) with their permissions.

Later apps' permissions are added by the post_migrate sync in etl_monitor.apps,
which runs the same function, so the groups stay complete as the product grows.
"""

from django.db import migrations


def create_role_groups(apps, schema_editor):
    from etl_monitor.roles import roles_sync

    roles_sync(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("loaders", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
