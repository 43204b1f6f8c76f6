"""``python manage.py apply_config FILE.yaml [--dry-run] [--as USER]``."""

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.config import ConfigInvalid, config_apply
from etl_monitor.errors import ServiceError
from etl_monitor.roles import Role, system_user_get

CONFIG_USER = "config-as-code"


class Command(BaseCommand):
    help = (
        "Apply a declarative YAML configuration (teams, loaders, detection rules; later routing, data sources). "
        "All or nothing, idempotent, recorded in history. Loaders become DRAFTs that still need approval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the YAML file.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report changes without writing.")
        parser.add_argument(
            "--as",
            dest="username",
            default=None,
            help=f"Act as this user (default: the system user '{CONFIG_USER}' with the Editor role).",
        )

    def handle(self, *args: Any, file: str, dry_run: bool, username: str | None, **options: Any) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from exc
        if username:
            try:
                user = get_user_model().objects.get(username=username)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user named {username!r}.") from None
        else:
            user = system_user_get(CONFIG_USER, Role.EDITOR)
        try:
            changes = config_apply(text=text, user=user, source=path.name, dry_run=dry_run)
        except ConfigInvalid as exc:
            for error in exc.errors:
                self.stderr.write(f"{file}: {error}")
            raise CommandError(f"{len(exc.errors)} error(s); nothing was changed.") from None
        except ServiceError as exc:
            raise CommandError(f"{exc.message} Nothing was changed.") from None
        for change in changes:
            self.stdout.write(str(change))
        changed = sum(1 for c in changes if c.action != "unchanged")
        verb = "would change" if dry_run else "changed"
        self.stdout.write(self.style.SUCCESS(f"{len(changes)} item(s) checked, {changed} {verb}."))
