"""``python manage.py load_demo``: the small demo (``demo`` with its defaults), kept for older scripts."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Load the small demo data set: the same as `manage.py demo` with its defaults (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("demo", stdout=self.stdout, stderr=self.stderr)
