"""Create the first admin user if none exists (used by ``make run``)."""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from etl_monitor.bootstrap import admin_ensure
from etl_monitor.errors import InvalidInput


class Command(BaseCommand):
    help = (
        "Create the first superuser (Admin role) if no superuser exists. Username from "
        "ETL_MONITOR_ADMIN_USER (default 'admin'); password from ETL_MONITOR_ADMIN_PASSWORD (it must pass "
        "the password validators), else generated and printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("ETL_MONITOR_ADMIN_USER") or "admin"
        try:
            created, generated = admin_ensure(username=username, password=os.environ.get("ETL_MONITOR_ADMIN_PASSWORD"))
        except InvalidInput as exc:
            problems = " ".join(exc.errors.get("password", [exc.message]))
            raise CommandError(
                f"ETL_MONITOR_ADMIN_PASSWORD is not accepted: {problems} Choose a stronger password, "
                "or unset it to have one generated."
            ) from None
        if not created:
            self.stdout.write("An admin user already exists; nothing to do.")
        elif generated:
            self.stdout.write(self.style.WARNING(f"Created admin user '{username}' with password: {generated}"))
            self.stdout.write("This password is shown only once; change it after logging in.")
        else:
            self.stdout.write(
                self.style.SUCCESS(f"Created admin user '{username}' (password from ETL_MONITOR_ADMIN_PASSWORD).")
            )
