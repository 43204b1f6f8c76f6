"""``python manage.py demo [--loaders N] [--days D] [--seed S] [--reset]``: demo data, never in production."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.demo import DEFAULT_DAYS, DEFAULT_LOADERS, DEFAULT_SEED, DemoPresent, demo_generate
from etl_monitor.errors import InvalidInput, ServiceError

SHOWN = 10  # loaders in trouble named in the summary


class Command(BaseCommand):
    help = (
        "Load demo data: teams, loaders in several time zones (one draft, some awaiting approval), D days of runs "
        "and signals following each schedule, a few failing, late, slow and low-volume loaders, and incidents "
        "with their timelines. Refuses when the demo is already there; --reset removes only the demo first. "
        "Never run it in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loaders", type=int, default=DEFAULT_LOADERS, help="How many loaders (default %(default)s)."
        )
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"Days of history (default {DEFAULT_DAYS}, or SIGNAL_RETENTION_DAYS when that is less).",
        )
        parser.add_argument(
            "--seed", type=int, default=DEFAULT_SEED, help="Random seed: the same seed gives the same data."
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Remove the demo data (and only it) first, then load it again; all or nothing.",
        )

    def handle(self, *args: Any, loaders: int, days: int | None, seed: int, reset: bool, **options: Any) -> None:
        try:
            report = demo_generate(loaders=loaders, days=days, seed=seed, reset=reset)
        except InvalidInput as exc:
            raise CommandError(" ".join(f"--{name}: {' '.join(msgs)}" for name, msgs in exc.errors.items())) from None
        except DemoPresent:
            self.stdout.write("Demo data already present; nothing changed (use --reset to load it again).")
            return
        except ServiceError as exc:
            raise CommandError(f"The demo could not be loaded; nothing changed: {exc.message}") from None
        if reset:
            self.stdout.write(
                "Removed the demo: {loaders} loaders, {runs} runs, {signals} signals, {incidents} incidents.".format(
                    **report.removed
                )
            )
        troubled = sorted(f"{code} ({p})" for code, p in report.profiles.items() if p != "healthy")
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data loaded in {report.seconds:.1f} s: {report.loaders} loaders ({report.active} monitored), "
                f"{report.runs} runs, {report.signals} signals, {report.incidents} incidents "
                f"({report.events} timeline entries) over {report.days} days."
            )
        )
        if report.left_out:
            self.stdout.write(f"Left out, their codes are taken by loaders of yours: {', '.join(report.left_out)}.")
        if troubled:
            more = f" and {len(troubled) - SHOWN} more" if len(troubled) > SHOWN else ""
            self.stdout.write(f"In trouble: {', '.join(troubled[:SHOWN])}{more}.")
