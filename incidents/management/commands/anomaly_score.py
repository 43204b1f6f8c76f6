"""``python manage.py anomaly_score --input series.csv --output scores.csv``: score an exported series."""

import sys
from contextlib import ExitStack
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from incidents.anomaly import SeriesDetector
from incidents.anomaly.csvscore import SeriesInputError, series_score_csv


class Command(BaseCommand):
    help = (
        "Score a series (CSV with the columns timestamp,value) with the anomaly detector, each row only "
        "with the rows before it. Writes timestamp,value,score,expected_low,expected_high,is_anomaly,learning. "
        "Use - for standard input or output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--input", required=True, help="CSV file with timestamp,value (- for standard input).")
        parser.add_argument("--output", required=True, help="CSV file to write (- for standard output).")
        parser.add_argument("--seasonality", default="auto", choices=["auto", "none", "daily", "weekly"])
        parser.add_argument("--sensitivity", default="medium", choices=["low", "medium", "high"])
        parser.add_argument("--direction", default="both", choices=["up", "down", "both"])

    def handle(self, *args: Any, **options: Any) -> None:
        detector = SeriesDetector(
            sensitivity=options["sensitivity"], direction=options["direction"], seasonality=options["seasonality"]
        )
        with ExitStack() as stack:
            try:
                source = (
                    sys.stdin
                    if options["input"] == "-"
                    else stack.enter_context(open(options["input"], encoding="utf-8-sig", newline=""))
                )
                target = (
                    self.stdout
                    if options["output"] == "-"
                    else stack.enter_context(open(options["output"], "w", encoding="utf-8", newline=""))
                )
            except OSError as exc:
                raise CommandError(f"cannot open {exc.filename}: {exc.strerror}") from None
            try:
                written = series_score_csv(source, target, detector)
            except SeriesInputError as exc:
                raise CommandError(str(exc)) from None
            except UnicodeDecodeError:
                raise CommandError("the input is not UTF-8 text") from None
        if options["output"] != "-":
            self.stderr.write(f"{written} rows scored into {options['output']}")
