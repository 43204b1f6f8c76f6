"""``python manage.py rule_backtest --rule NAME|ID --days N [--json]``: what a rule would have opened."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from etl_monitor.errors import InvalidInput
from etl_monitor.humanize import duration_words, local_time
from incidents.backtest import Backtest, rule_backtest
from incidents.models import DetectionRule


class Command(BaseCommand):
    help = (
        "Backtest a detection rule: the incidents it would have opened over the last N days (start, end, "
        "peak) and how many per subject, computed from the stored runs and signals. Nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rule", required=True, help="The rule's name or id.")
        parser.add_argument("--days", default="30", help="How many days back, 1 to 90 (default 30).")
        parser.add_argument("--json", action="store_true", help="The result as JSON (as the API answers).")

    def handle(self, *args: Any, rule: str, days: str, json: bool, **options: Any) -> None:
        found = DetectionRule.objects.filter(name=rule).first()
        if found is None and rule.isdigit():
            found = DetectionRule.objects.filter(pk=int(rule)).first()
        if found is None:
            raise CommandError(f"--rule: no rule named or numbered {rule!r}.")
        try:
            result = rule_backtest(rule=found, days=days)
        except InvalidInput as exc:
            problems = "; ".join(f"--{name}: {' '.join(messages)}" for name, messages in exc.errors.items())
            raise CommandError(problems) from None
        if json:
            self.stdout.write(_json_dumps(result))
        else:
            self._table(result)

    def _table(self, result: Backtest) -> None:
        span = f"{local_time(result.start)} → {local_time(result.end)}"
        self.stdout.write(self.style.MIGRATE_HEADING(f"{result.rule}: {span}"))
        for note in result.notes:
            self.stdout.write(f"  {note}")
        for error in result.errors:
            self.stdout.write(self.style.ERROR(f"  {error}"))
        if not result.incidents:
            self.stdout.write(f"  No incident would have opened ({result.subjects_measured} subjects measured).")
        else:
            self.stdout.write(f"  {'subject':<30} {'start':<24} {'end':<24} {'duration':<12} peak")
            for incident in result.incidents:
                end = local_time(incident.end) if incident.end else "still open"
                peak = _number(incident.peak)
                if incident.peak_score is not None:
                    peak += f" (score {incident.peak_score:.2f})"
                if incident.reopened:
                    peak += f", reopened {incident.reopened}×"
                if incident.flapping:
                    peak += ", flapping"
                self.stdout.write(
                    f"  {incident.subject:<30} {local_time(incident.start):<24} {end:<24} "
                    f"{duration_words(incident.duration_seconds):<12} {peak}"
                )
            self.stdout.write(self.style.MIGRATE_HEADING("Per subject"))
            for subject, count in sorted(result.per_subject.items(), key=lambda item: (-item[1], item[0])):
                self.stdout.write(f"  {subject:<30} {count}")
        self.stdout.write(
            f"{len(result.incidents)} would-be incident(s) over {len(result.per_subject)} subject(s); "
            f"{result.evaluations} evaluations in {duration_words(result.elapsed_seconds)}."
        )


def _json_dumps(result: Backtest) -> str:
    return json.dumps(result.as_dict(), indent=2)


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
