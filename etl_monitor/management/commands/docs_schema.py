"""Write the OpenAPI schema the documentation site renders (docs/api/openapi.yaml); ``--check``
compares instead, so a test fails when an API change was not regenerated into the docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.schema import DOCS_SCHEMA_FILE, api_schema_document


class Command(BaseCommand):
    help = (
        "Write the API's OpenAPI schema (as served on PostgreSQL) to docs/api/openapi.yaml for the "
        "documentation site's API reference; --check only compares."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", default=str(DOCS_SCHEMA_FILE), metavar="FILE", help="Default: docs/api/openapi.yaml."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Write nothing; exit 1 if FILE is missing or differs from the schema the code generates.",
        )

    def handle(self, *args: Any, output: str, check: bool, **options: Any) -> None:
        path = Path(output)
        regenerate = "python manage.py docs_schema" + ("" if path == DOCS_SCHEMA_FILE else f" --output {path}")
        if check and not path.is_file():
            raise CommandError(f"{path} is missing: run `{regenerate}` (or `make docs`) and commit it.")
        try:
            schema = api_schema_document()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if check:
            if path.read_bytes() != schema:
                raise CommandError(
                    f"{path} is out of date with the API's code: run `{regenerate}` (or `make docs`) and commit it."
                )
            self.stdout.write(f"{path} is up to date.")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(schema)
        self.stdout.write(f"Wrote {path}")
