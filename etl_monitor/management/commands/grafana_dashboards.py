"""Write the Grafana dashboards for this site: the links into ETL Monitor point at
ETL_MONITOR_BASE_URL (docs/dashboards.md, "Provisioning")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.errors import InvalidInput
from etl_monitor.grafana_dashboards import grafana_dashboards_stale, grafana_dashboards_write


class Command(BaseCommand):
    help = (
        "Write the four Grafana dashboards into DIR (GRAFANA_DASHBOARDS_DIR) with their links into "
        "ETL Monitor pointing at ETL_MONITOR_BASE_URL; --check only compares."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, metavar="DIR", help="The directory Grafana's provider reads.")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; exit 1 naming each dashboard file of DIR that is missing or out of date.",
        )

    def handle(self, *args: Any, output: str, check: bool, **options: Any) -> None:
        directory = Path(output)
        base_url = settings.ETL_MONITOR_BASE_URL
        try:
            if check:
                stale = grafana_dashboards_stale(output=directory, base_url=base_url)
                if stale:
                    raise CommandError(
                        f"Out of date in {directory}: {', '.join(stale)} "
                        f"(run manage.py grafana_dashboards --output {directory})."
                    )
                self.stdout.write(f"The dashboards in {directory} are up to date.")
                return
            for path in grafana_dashboards_write(output=directory, base_url=base_url):
                self.stdout.write(f"Wrote {path}")
            self.stdout.write(f"Links into ETL Monitor point at {base_url.rstrip('/')}.")
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
