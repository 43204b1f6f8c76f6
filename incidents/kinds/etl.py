"""Built-in rule kinds over ETL Monitor's own data (runs and signals).

Every query is bounded by the rule's window on an indexed time column, so a
rule's cost follows the window, not the size of the signals table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db.models import Avg, Count, Max, Min, Q, QuerySet, Sum

from etl_monitor.humanize import duration_words
from incidents.kinds import Measurement, Param, RuleKind, human_time, kind_register, scope_key
from loaders.models import Loader, LoaderVersion, VersionState
from loaders.schedule import EARLY_TOLERANCE_FRACTION, EARLY_TOLERANCE_SECONDS, previous_slot
from signals_app.models import Run, RunStatus, Signal, ValidationStatus, run_signals_q


def window_start(rule: Any, now: dt.datetime) -> dt.datetime:
    """The start of the rule's window at ``now``: every query of a kind is bounded by it."""
    return now - dt.timedelta(seconds=rule.window_seconds)


CONTRACT_COLUMNS = (
    "loader_id",
    "number",
    "schedule_cron",
    "schedule_timezone",
    "grace_minutes",
    "max_duration_minutes",
    "expected_rows_min",
    "expected_rows_max",
    "freshness_sla_minutes",
    "decided_at",
)


def active_versions(loaders: QuerySet[Loader] | list[int]) -> dict[int, LoaderVersion]:
    """The ACTIVE contract of the given loaders (only the columns detection reads)."""
    versions = LoaderVersion.objects.filter(loader__in=loaders, state=VersionState.ACTIVE).only(*CONTRACT_COLUMNS)
    return {v.loader_id: v for v in versions}


@kind_register
class SignalFailureRate(RuleKind):
    """FAILED share of signals in the window, in percent, per loader or over all loaders
    (the roadmap's rule 1: more than 5% in 5 minutes → HIGH).

    Only the signals jobs send count: the ones the platform writes for a finished run
    (``run_status``, ``run_duration_seconds``, row counts) restate the run, and a failed run is
    the ``run_failed`` rule's — one failed run is one incident, not also a failure rate."""

    name = "signal_failure_rate"
    description = "Percentage of FAILED signals in the window."
    default_threshold = 5.0
    fast_path = True
    params = {
        "per": Param(str, default="loader", choices=("loader", "overall"), help="Per loader, or one overall rate."),
        "min_signals": Param(int, default=1, help="Ignore subjects with fewer signals in the window."),
    }

    def share_key(self, rule: Any) -> Any:
        return (rule.window_seconds, rule.params.get("per", "loader"), rule.params.get("min_signals", 1))

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        signals = Signal.objects.filter(
            loader__in=loaders, captured_at__gte=window_start(rule, now), captured_at__lte=now
        ).exclude(run_signals_q())
        minimum = rule.params.get("min_signals", 1)
        if rule.params.get("per", "loader") == "overall":
            totals = signals.aggregate(total=Count("id"), failed=Count("id", filter=Q(validation_status="FAILED")))
            if totals["total"] < minimum:
                return []
            rate = 100.0 * totals["failed"] / totals["total"]
            return [Measurement("all loaders", rate, details=totals)]
        rows = (
            signals.values("loader_id", "loader__loader_code")
            .annotate(total=Count("id"), failed=Count("id", filter=Q(validation_status=ValidationStatus.FAILED)))
            .filter(total__gte=minimum)
        )
        return [
            Measurement(
                r["loader__loader_code"],
                100.0 * r["failed"] / r["total"],
                loader_id=r["loader_id"],
                details={"failed": r["failed"], "total": r["total"]},
            )
            for r in rows
        ]


@kind_register
class RunFailed(RuleKind):
    """Runs that finished FAILED (or TIMED_OUT) and FAILED signals sent directly, per loader, in the window.

    Each new failure is a new breach (the measurement's episode is the latest failure), so the
    incident counts failures, and one resolved by hand comes back only with a new failure. With
    ``resolve_on_success`` (the default) a run that succeeds after the latest failure clears the
    loader whatever the count: the open incident resolves, naming that run."""

    name = "run_failed"
    description = "Failed runs and FAILED signals in the window."
    default_threshold = 0.0
    fast_path = True
    params = {
        "resolve_on_success": Param(
            bool, default=True, help="A run that succeeds after the latest failure resolves the incident."
        ),
    }

    def share_key(self, rule: Any) -> Any:
        return (rule.window_seconds, rule.params.get("resolve_on_success", True))

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        since = window_start(rule, now)
        failed = Run.objects.filter(loader__in=loaders, finished_at__gte=since, finished_at__lte=now).filter(
            status__in=[RunStatus.FAILED, RunStatus.TIMED_OUT]
        )
        runs = list(failed.values("loader_id", "loader__loader_code").annotate(count=Count("id")))
        # The latest failed run of each loader gives the error and correlation id shown on the incident.
        latest: dict[int, Run] = {}
        if runs:
            for run in failed.order_by("loader_id", "-finished_at", "-pk").only(
                "pk", "run_id", "loader_id", "finished_at", "error_text", "correlation_id"
            ):
                latest.setdefault(run.loader_id, run)
        # Signals of runs are already counted as runs; here only the ones jobs sent themselves.
        signals = (
            Signal.objects.filter(loader__in=loaders, captured_at__gte=since, captured_at__lte=now, run__isnull=True)
            .filter(validation_status=ValidationStatus.FAILED)
            .values("loader_id", "loader__loader_code")
            .annotate(count=Count("id"), correlation=Max("correlation_id"), last=Max("captured_at"))
        )
        found: dict[int, Measurement] = {}
        last_failure: dict[int, tuple[dt.datetime, str]] = {}  # loader → (when, which failure)
        for r in runs:
            last = latest.get(r["loader_id"])
            found[r["loader_id"]] = Measurement(
                r["loader__loader_code"],
                float(r["count"]),
                loader_id=r["loader_id"],
                details={"failed_runs": r["count"], "error": (last.error_text if last else "")[:500]},
                correlation_id=last.correlation_id if last else "",
            )
            if last is not None:
                found[r["loader_id"]].details["run_id"] = str(last.run_id)
                last_failure[r["loader_id"]] = (last.finished_at, f"run {last.run_id}")
        for r in signals:
            m = found.setdefault(r["loader_id"], Measurement(r["loader__loader_code"], 0.0, loader_id=r["loader_id"]))
            m.value = (m.value or 0) + r["count"]
            m.details["failed_signals"] = r["count"]
            m.correlation_id = m.correlation_id or r["correlation"] or ""
            if r["loader_id"] not in last_failure or r["last"] > last_failure[r["loader_id"]][0]:
                last_failure[r["loader_id"]] = (r["last"], "a FAILED signal")
        if not found:
            return []
        zones = {loader_id: v.schedule_timezone for loader_id, v in active_versions(list(found)).items()}
        successes = self._latest_successes(rule, list(found), since, now)
        for loader_id, m in found.items():
            when, what = last_failure[loader_id]
            zone = zones.get(loader_id)
            m.details["latest_at"] = human_time(when, zone)
            m.episode = f"{what}@{when.isoformat()}"
            m.summary = f"{what} failed at {human_time(when, zone)}"
            success = successes.get(loader_id)
            if success is not None and success.finished_at > when:
                # Rerun and fixed: whatever the count in the window, the loader works again.
                m.breached = False
                m.details["resolved_by_run"] = str(success.run_id)
                m.summary = f"run {success.run_id} succeeded at {human_time(success.finished_at, zone)}"
        return list(found.values())

    @staticmethod
    def _latest_successes(rule: Any, loader_ids: list[int], since: dt.datetime, now: dt.datetime) -> dict[int, Run]:
        """The latest run of each loader that succeeded in the window (when successes resolve)."""
        if not rule.params.get("resolve_on_success", True):
            return {}
        runs = (
            Run.objects.filter(
                loader_id__in=loader_ids, status=RunStatus.SUCCEEDED, finished_at__gte=since, finished_at__lte=now
            )
            .order_by("loader_id", "-finished_at")
            .only("loader_id", "run_id", "finished_at")
        )
        latest: dict[int, Run] = {}
        for run in runs:
            latest.setdefault(run.loader_id, run)
        return latest


@kind_register
class RunDuration(RuleKind):
    """A run longer than allowed (also while still running), or suspiciously fast.

    ``mode=max``: the threshold in seconds, or the ACTIVE version's maximum duration
    when the rule has no threshold. ``mode=min``: runs that finished in less than the
    threshold seconds."""

    name = "run_duration"
    description = "Run duration above a maximum (also while running) or below a minimum."
    params = {"mode": Param(str, default="max", choices=("max", "min"))}
    self_deciding = True

    def condition_errors(self, rule: Any) -> dict[str, list[str]]:
        """``mode=max`` may fall back to the active version's maximum; ``mode=min`` has no such limit."""
        if (rule.params or {}).get("mode") == "min" and rule.threshold is None:
            return {"threshold": ["run_duration with mode min needs a threshold (seconds)."]}
        return {}

    def share_key(self, rule: Any) -> Any:
        return (rule.window_seconds, rule.params.get("mode", "max"), rule.threshold)

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        since = window_start(rule, now)
        mode = rule.params.get("mode", "max")
        runs = Run.objects.filter(loader__in=loaders).select_related("loader")
        if mode == "max":
            runs = runs.filter(Q(status=RunStatus.RUNNING) | Q(finished_at__gte=since, finished_at__lte=now))
        else:
            runs = runs.filter(finished_at__gte=since, finished_at__lte=now, status=RunStatus.SUCCEEDED)
        worst: dict[int, Measurement] = {}
        runs = list(
            runs.only(
                "loader_id",
                "loader__loader_code",
                "status",
                "started_at",
                "duration_seconds",
                "correlation_id",
                "run_id",
            )
        )
        versions = active_versions([run.loader_id for run in runs]) if runs else {}
        for run in runs:
            seconds = (
                run.duration_seconds if run.duration_seconds is not None else (now - run.started_at).total_seconds()
            )
            if mode == "max":
                limit = rule.threshold
                if limit is None:
                    version = versions.get(run.loader_id)
                    if version is None or not version.max_duration_minutes:
                        continue
                    limit = version.max_duration_minutes * 60.0
                breached = seconds > limit
            else:
                if rule.threshold is None:
                    continue
                limit, breached = rule.threshold, seconds < rule.threshold
            current = worst.get(run.loader_id)
            if (
                current is None
                or (breached and not current.breached)
                or (
                    breached == current.breached
                    and (seconds > current.value if mode == "max" else seconds < current.value)
                )
            ):
                running = run.status == "RUNNING"
                worst[run.loader_id] = Measurement(
                    run.loader.loader_code,
                    seconds,
                    loader_id=run.loader_id,
                    breached=breached,
                    details={
                        "limit_seconds": limit,
                        "run_id": str(run.run_id),
                        "running": running,
                        "duration": duration_words(seconds),  # for messages: "1 h 10 min", not 4200.0
                        "limit": duration_words(limit),
                    },
                    correlation_id=run.correlation_id,
                    episode=f"run:{run.run_id}",  # each run out of bounds is its own breach
                    summary=f"run {run.run_id} {'has been running for' if running else 'took'} "
                    f"{duration_words(seconds)} ({'limit' if mode == 'max' else 'minimum'} {duration_words(limit)})",
                )
        return list(worst.values())


@kind_register
class VolumeOutOfRange(RuleKind):
    """Rows written by the latest run finished in the window, outside the ACTIVE version's expected range."""

    name = "volume_out_of_range"
    description = "Rows written outside the expected range of the active version."
    self_deciding = True

    def share_key(self, rule: Any) -> Any:
        return rule.window_seconds

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        runs = (
            Run.objects.filter(
                loader__in=loaders,
                finished_at__gte=window_start(rule, now),
                finished_at__lte=now,  # a backtest's past moment must not see later runs
                rows_written__isnull=False,
            )
            .order_by("loader_id", "-finished_at")
            .select_related("loader")
        )
        latest: dict[int, Run] = {}
        for run in runs:
            latest.setdefault(run.loader_id, run)
        versions = active_versions(list(latest)) if latest else {}
        found = []
        for loader_id, run in latest.items():
            version = versions.get(loader_id)
            if version is None or (version.expected_rows_min is None and version.expected_rows_max is None):
                continue
            low, high = version.expected_rows_min, version.expected_rows_max
            rows = run.rows_written
            breached = (low is not None and rows < low) or (high is not None and rows > high)
            found.append(
                Measurement(
                    run.loader.loader_code,
                    float(rows),
                    loader_id=loader_id,
                    breached=breached,
                    details={"expected_min": low, "expected_max": high, "run_id": str(run.run_id)},
                    correlation_id=run.correlation_id,
                    episode=f"run:{run.run_id}",  # each run out of range is its own breach
                    summary=f"run {run.run_id} wrote {rows:,} rows",
                )
            )
        return found


AGGREGATES = {"avg": Avg, "max": Max, "min": Min, "sum": Sum, "count": Count}


@kind_register
class MetricThreshold(RuleKind):
    """Any signal key or metric type, aggregated per loader (or per loader and key) over the window,
    against the threshold."""

    name = "metric_threshold"
    description = "A signal key or metric type aggregated (avg, max, min, sum, count, last) over the window."
    fast_path = True
    params = {
        "signal_key": Param(str, help="Signals with this key."),
        "metric_type": Param(str, help="Or: signals of this metric type."),
        "aggregation": Param(str, default="avg", choices=("avg", "max", "min", "sum", "count", "last")),
        "per": Param(
            str,
            default="loader",
            choices=("loader", "signal_key"),
            help="One subject per loader, or per loader and signal key (LOADER/key: a service of STATS-PERF).",
        ),
    }

    def check(self, params: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
        if not params.get("signal_key") and not params.get("metric_type"):
            errors["params.signal_key"] = ["Give signal_key or metric_type."]
        return params

    def share_key(self, rule: Any) -> Any:
        p = rule.params
        return (
            rule.window_seconds,
            p.get("signal_key"),
            p.get("metric_type"),
            p.get("aggregation", "avg"),
            p.get("per", "loader"),
        )

    @staticmethod
    def _subject(rule: Any, loader_code: str, signal_key: str) -> str:
        return f"{loader_code}/{signal_key}" if rule.params.get("per") == "signal_key" else loader_code

    def evaluate_many(
        self, rules: list[Any], scope_of: Callable[[Any], QuerySet[Loader]], now: dt.datetime
    ) -> dict[int, list[Measurement] | BaseException]:
        """Rules by signal key over the same window and scope share one query: every aggregation
        of every key they name, grouped by loader and key."""
        groups: dict[Any, list[Any]] = {}
        others = []
        for rule in rules:
            aggregation = rule.params.get("aggregation", "avg")
            if rule.params.get("signal_key") and aggregation in AGGREGATES:
                key = (rule.window_seconds, rule.params.get("metric_type"), scope_key(rule))
                groups.setdefault(key, []).append(rule)
            else:
                others.append(rule)
        results = super().evaluate_many(others, scope_of, now) if others else {}
        for (window, metric_type, _scope), group in groups.items():
            try:
                rows = self._aggregate_keys(group[0], scope_of(group[0]), now, window, metric_type, group)
            except Exception as exc:  # noqa: BLE001 — reported per rule by the engine
                results.update({rule.pk: exc for rule in group})
                continue
            for rule in group:
                aggregation = rule.params.get("aggregation", "avg")
                results[rule.pk] = [
                    Measurement(
                        self._subject(rule, r["loader__loader_code"], r["signal_key"]),
                        float(r[aggregation]) if r[aggregation] is not None else None,
                        loader_id=r["loader_id"],
                        details={"aggregation": aggregation},
                    )
                    for r in rows.get(rule.params["signal_key"], ())
                ]
        return results

    def _aggregate_keys(
        self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime, window: int, metric_type: Any, group: list[Any]
    ) -> dict[str, list[dict[str, Any]]]:
        keys = sorted({r.params["signal_key"] for r in group})
        since = now - dt.timedelta(seconds=window)
        signals = Signal.objects.filter(loader__in=loaders, captured_at__gte=since, captured_at__lte=now)
        signals = signals.filter(signal_key__in=keys)
        if metric_type:
            signals = signals.filter(metric_type=metric_type)
        rows = signals.values("loader_id", "loader__loader_code", "signal_key").annotate(
            avg=Avg("value_number"),
            max=Max("value_number"),
            min=Min("value_number"),
            sum=Sum("value_number"),
            count=Count("id"),
        )
        by_key: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_key.setdefault(row["signal_key"], []).append(row)
        return by_key

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        signals = Signal.objects.filter(
            loader__in=loaders, captured_at__gte=window_start(rule, now), captured_at__lte=now
        )
        if key := rule.params.get("signal_key"):
            signals = signals.filter(signal_key=key)
        if metric_type := rule.params.get("metric_type"):
            signals = signals.filter(metric_type=metric_type)
        aggregation = rule.params.get("aggregation", "avg")
        per_key = rule.params.get("per") == "signal_key"
        if aggregation == "last":
            rows = signals.filter(value_number__isnull=False).order_by("loader_id", "-captured_at")
            found: dict[Any, Measurement] = {}
            for s in rows.select_related("loader").only(
                "loader_id", "loader__loader_code", "signal_key", "value_number", "correlation_id", "captured_at"
            ):
                found.setdefault(
                    (s.loader_id, s.signal_key if per_key else ""),
                    Measurement(
                        self._subject(rule, s.loader.loader_code, s.signal_key),
                        s.value_number,
                        loader_id=s.loader_id,
                        correlation_id=s.correlation_id,
                    ),
                )
            return list(found.values())
        column = "id" if aggregation == "count" else "value_number"
        grouping = ("loader_id", "loader__loader_code", *(("signal_key",) if per_key else ()))
        rows = signals.values(*grouping).annotate(value=AGGREGATES[aggregation](column))
        return [
            Measurement(
                self._subject(rule, r["loader__loader_code"], r.get("signal_key", "")),
                float(r["value"]) if r["value"] is not None else None,
                loader_id=r["loader_id"],
                details={"aggregation": aggregation},
            )
            for r in rows
        ]


@kind_register
class MissedRun(RuleKind):
    """A loader's ACTIVE schedule (cron in its time zone, plus grace) expected a run that did not start.

    The latest scheduled time at or before ``now - grace`` is computed in the
    loader's time zone (croniter on aware datetimes, so daylight-saving changes
    move the UTC time as they should); a run started since that time, less a
    tolerance for early starts, satisfies it. The tolerance is a fraction of the
    schedule's period (``early_tolerance_fraction`` of the gap to the slot before),
    capped by ``early_tolerance_seconds``: a fixed five minutes would let the run of
    the previous slot of a ``*/5`` loader satisfy the current one, so a skipped run
    was never reported, and a loader every minute that stopped was reported only
    about six minutes late."""

    name = "missed_run"
    description = "A scheduled run did not start within its grace period."
    params = {
        "early_tolerance_seconds": Param(
            int,
            default=EARLY_TOLERANCE_SECONDS,
            help="Upper bound of how early a run may start and still count for its slot.",
        ),
        "early_tolerance_fraction": Param(
            float,
            default=EARLY_TOLERANCE_FRACTION,
            help="How early a run may start, as a fraction of the schedule's period (0–0.5).",
        ),
    }
    self_deciding = True

    def check(self, params: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
        fraction = params.get("early_tolerance_fraction")
        if fraction is not None and not 0 <= fraction <= 0.5:
            # Beyond half the period a run would count for two slots at once.
            errors["params.early_tolerance_fraction"] = ["Must be between 0 and 0.5."]
        if params.get("early_tolerance_seconds", 0) < 0:
            errors["params.early_tolerance_seconds"] = ["Must be 0 or more."]
        return params

    def share_key(self, rule: Any) -> Any:
        return (
            rule.params.get("early_tolerance_seconds", EARLY_TOLERANCE_SECONDS),
            rule.params.get("early_tolerance_fraction", EARLY_TOLERANCE_FRACTION),
        )

    def evaluate(self, rule: Any, loaders: QuerySet[Loader], now: dt.datetime) -> list[Measurement]:
        cap = rule.params.get("early_tolerance_seconds", EARLY_TOLERANCE_SECONDS)
        fraction = rule.params.get("early_tolerance_fraction", EARLY_TOLERANCE_FRACTION)
        versions = active_versions(loaders)
        # loader → (the slot due, how early a run may start for it, the version)
        expected: dict[int, tuple[dt.datetime, dt.timedelta, LoaderVersion]] = {}
        for loader_id, version in versions.items():
            deadline = now - dt.timedelta(minutes=version.grace_minutes)
            slot = previous_slot(version.schedule_cron, version.schedule_timezone, deadline)
            if slot is None:
                continue  # no schedule (on demand)
            if version.decided_at is not None and slot.at < version.decided_at:
                continue  # scheduled before this version was approved: not its run to miss
            expected[loader_id] = (slot.at, slot.tolerance(fraction, cap), version)
        if not expected:
            return []
        earliest = min(due - tolerance for due, tolerance, _v in expected.values())
        last_start = dict(
            Run.objects.filter(loader_id__in=expected, started_at__gte=earliest, started_at__lte=now)
            .values("loader_id")
            .annotate(last=Max("started_at"))
            .values_list("loader_id", "last")
        )
        codes = dict(Loader.objects.filter(pk__in=expected).values_list("pk", "loader_code"))
        found = []
        for loader_id, (due, tolerance, version) in expected.items():
            started = last_start.get(loader_id)
            ok = started is not None and started >= due - tolerance
            late = (now - due).total_seconds() / 60.0
            zone_name = version.schedule_timezone or "UTC"
            found.append(
                Measurement(
                    codes[loader_id],
                    0.0 if ok else late,
                    loader_id=loader_id,
                    breached=not ok,
                    details={
                        "expected_at": due.isoformat(),
                        "expected_at_local": human_time(due, zone_name),
                        "schedule": version.schedule_cron,
                        "timezone": version.schedule_timezone,
                        "grace_minutes": version.grace_minutes,
                        "early_tolerance_seconds": tolerance.total_seconds(),
                    },
                    # Each missed slot is its own breach: the next slot missed is a new one.
                    episode=f"due:{due.isoformat()}",
                    summary=f"the run due {human_time(due, zone_name)} did not start",
                )
            )
        return found
