"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEY."""

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from etl_monitor.crypto import EncryptedTextField


class Command(BaseCommand):
    help = (
        "After putting a new key first in FIELD_ENCRYPTION_KEY (keeping the old ones after it), re-encrypt every "
        "secret — current rows and history rows — with the new key. Then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields or model._meta.proxy:
                continue
            pk = model._meta.pk.name
            with transaction.atomic():
                for field in fields:
                    # Reading decrypts with any configured key; writing encrypts with the first.
                    rows = model._default_manager.exclude(**{field: ""}).exclude(**{f"{field}__isnull": True})
                    for key, plaintext in rows.values_list(pk, field).iterator():
                        model._default_manager.filter(**{pk: key}).update(**{field: plaintext})
                        total += 1
            self.stdout.write(f"{model._meta.label}: {', '.join(fields)}")
        self.stdout.write(self.style.SUCCESS(f"{total} secret value(s) re-encrypted with the first key."))
