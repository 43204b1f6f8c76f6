"""``python manage.py detect_once [--rule NAME] [--all]``: one evaluation cycle, with every decision printed."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.detection import rule_evaluate, rules_due
from incidents.models import DetectionRule


class Command(BaseCommand):
    help = (
        "Evaluate detection rules once and print what was decided for every subject — the tool for "
        "'why did (or didn't) this fire?'. By default the enabled rules that are due; --all for every enabled rule."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rule", action="append", default=[], help="Evaluate this rule (name); repeatable.")
        parser.add_argument("--all", action="store_true", help="Every enabled rule, due or not.")

    def handle(self, *args: Any, rule: list[str], all: bool, **options: Any) -> None:
        rules = DetectionRule.objects.filter(enabled=True)
        if rule:
            rules = DetectionRule.objects.filter(name__in=rule)
            missing = sorted(set(rule) - set(rules.values_list("name", flat=True)))
            if missing:
                raise CommandError(f"No rule named {', '.join(map(repr, missing))}.")
        elif not all:
            rules = rules_due()
        for detection_rule in rules.order_by("name"):
            report = rule_evaluate(rule=detection_rule)
            self.stdout.write(self.style.MIGRATE_HEADING(f"{detection_rule.name} [{detection_rule.kind}]"))
            if report.error:
                self.stdout.write(self.style.ERROR(f"  {report.error}"))
            elif not report.decisions:
                self.stdout.write("  nothing measured (no data in the window, or no loader in scope)")
            for d in report.decisions:
                value = "—" if d.value is None else f"{d.value:,.2f}".rstrip("0").rstrip(".")
                line = f"  {d.subject}: value {value} → {'BREACH' if d.breached else 'ok'} → {d.action}"
                if d.incident_id:
                    line += f" (incident #{d.incident_id})"
                if d.note:
                    line += f" — {d.note}"
                self.stdout.write(line)
