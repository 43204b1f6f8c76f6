"""Load the small demo data set (idempotent)."""

from typing import Any

from django.core.management.base import BaseCommand

from etl_monitor.bootstrap import demo_load


class Command(BaseCommand):
    help = "Load demo teams and loaders (one active, one with a version pending approval, one draft)."

    def handle(self, *args: Any, **options: Any) -> None:
        if demo_load():
            self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        else:
            self.stdout.write("Demo data already present; nothing to do.")
