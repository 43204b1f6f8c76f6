"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEY."""

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from etl_monitor.crypto import EncryptedTextField, secret_undecryptable


class Command(BaseCommand):
    help = (
        "After putting a new key first in FIELD_ENCRYPTION_KEY (keeping the old ones after it), re-encrypt every "
        "secret — current rows and history rows — with the new key. Then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        unreadable: list[str] = []
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
                        if secret_undecryptable(plaintext):
                            unreadable.append(f"{model._meta.label} {key} {field}")
                            continue  # left exactly as stored: it may still be read with its own key
                        model._default_manager.filter(**{pk: key}).update(**{field: plaintext})
                        total += 1
            self.stdout.write(f"{model._meta.label}: {', '.join(fields)}")
        self.stdout.write(self.style.SUCCESS(f"{total} secret value(s) re-encrypted with the first key."))
        if unreadable:
            # Dropping an old key now would lose these for good: say so, and fail the command.
            raise CommandError(
                f"{len(unreadable)} stored value(s) decrypt with none of the listed keys and were left as they are: "
                f"{'; '.join(unreadable[:20])}{' …' if len(unreadable) > 20 else ''}. List the key they were "
                "written with (after the new one) and run this again, or set those secrets again; do not remove "
                "an old key before this command succeeds."
            )
