"""Create or update the read-only PostgreSQL role for Grafana's SQL panels (docs/dashboards.md).

A command, not a migration: creating a role needs CREATEROLE, which the application's own
database user often lacks; the operator runs it once, and again after changing field protection.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.errors import InvalidInput
from etl_monitor.grafana_role import grafana_role_apply, grafana_role_readable


class Command(BaseCommand):
    help = "Create or update the read-only PostgreSQL role Grafana's SQL panels use (PostgreSQL only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default="etl_monitor_grafana", help="Role name (default etl_monitor_grafana).")
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="Environment variable holding the role's password; makes it a LOGIN role. Without it: NOLOGIN.",
        )
        parser.add_argument("--check", action="store_true", help="Change nothing; print what the role can read.")

    def handle(self, *args: Any, role: str, password_env: str | None, check: bool, **options: Any) -> None:
        try:
            if not check:
                password = None
                if password_env:
                    if password_env not in os.environ:
                        raise CommandError(f"--password-env: the variable {password_env} is not set.")
                    password = os.environ[password_env]
                grafana_role_apply(role=role, password=password)
                self.stdout.write(f"Role {role} updated ({'LOGIN' if password else 'NOLOGIN'}).")
            for table, columns in grafana_role_readable(role=role).items():
                self.stdout.write(f"{table}: {', '.join(columns)}")
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
