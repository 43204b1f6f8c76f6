"""A streaming anomaly detector for one series: learned seasonal baseline, no look-ahead.

``SeriesDetector.update(ts, value)`` scores a point with what was learned *before* it, then
learns from it. The baseline is a robust additive Holt-Winters model (level + damped trend +
seasonal profile), run for three seasonalities at once (none, daily = hour of day, weekly =
hour of week). The one whose one-step-ahead errors have been smallest is the one used, so the
seasonality is detected from the history, not configured (an override is allowed).

While every value seen is non-negative the models work on log(1 + value): ETL noise is a share
of the value (rows, durations), so the band is even in ratios, and right tails are shorter; the
expected value and range are turned back into the series' units. The first negative value
switches the series to its own units for good and it learns again. The spread is the larger of a
winsorised mean absolute error and a tail estimate (the |error| one point in ten exceeds, moved
by a fixed step per point), which keeps a mostly-zero count from learning that 1 is an outlier.

Robustness, i.e. why an incident does not teach the baseline that it is normal:
- every update is winsorised: an error beyond ``WINSOR_Z`` spreads moves the level, trend,
  seasonal profile and spread only as far as an error of exactly ``WINSOR_Z`` spreads would;
- a persistent shift (``shift_points`` consecutive points beyond ``SHIFT_Z`` spreads on the
  same side) is a change point: the baseline is re-based on those points, shifted or scaled
  (whichever fits them better), so the detector alarms first and then adapts instead of
  alarming forever;
- ``restart(at)`` is a *known* change point (a new approved loader version): from ``at`` the
  detector is learning again for ``relearn_points`` points, then re-bases on them the same way;
  the seasonal shape is kept, but its next visits move it strongly.

Pure Python and Django-free on purpose: the engine keeps one small JSON state per series
(``to_dict``/``from_dict``) and ``manage.py anomaly_score`` streams millions of rows through it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Sensitivity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    BOTH = "both"


class Seasonality(StrEnum):
    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"


# The score a point must reach to be an anomaly, per sensitivity; and the same as a distance
# from the expected value in robust spreads (score = 1 - exp(-(z / SCORE_Z_SCALE) ** 2)).
SCORE_Z_SCALE = 4.0
SENSITIVITY_SCORE: dict[str, float] = {Sensitivity.LOW: 0.9, Sensitivity.MEDIUM: 0.75, Sensitivity.HIGH: 0.5}


def score_to_z(score: float) -> float:
    return SCORE_Z_SCALE * math.sqrt(-math.log(1.0 - score))


SENSITIVITY_Z: dict[str, float] = {name: score_to_z(score) for name, score in SENSITIVITY_SCORE.items()}

# Learning rates per point (exponential forgetting) and robustness constants. The spread is a
# mean absolute error; NORMAL_SIGMA turns it into a standard deviation for Gaussian noise.
ALPHA = 0.08  # level
BETA = 0.05  # trend
PHI = 0.98  # trend damping: a trend is believed less the further it is extrapolated
GAMMA = 0.25  # seasonal profile (per visit of a bucket)
ETA = 0.03  # spread
WINSOR_Z = 2.0
SHIFT_Z = 3.5
NORMAL_SIGMA = 1.2533
# The spread never falls below this share of the expected value's size, so a constant series
# (rows written exactly 1,000 every day) does not alarm on 1,001.
RELATIVE_FLOOR = 0.01
ABSOLUTE_FLOOR = 1e-9
# The same floor in log space: a spread of 1 % of the value.
LOG_FLOOR = math.log(1.0 + RELATIVE_FLOOR)
# The tail spread: the |error| exceeded by TAIL_SHARE of the points, as a standard deviation
# (for Gaussian noise, 10 % of the errors lie beyond 1.645 of them), tracked with steps of TAIL_RATE.
TAIL_SHARE = 0.1
TAIL_SIGMA = 1.0 / 1.645
TAIL_RATE = 0.02
_TAIL_UP = 1.0 + TAIL_RATE * (1.0 - TAIL_SHARE)
_TAIL_DOWN = 1.0 - TAIL_RATE * TAIL_SHARE
# A more seasonal model must beat the simpler one's error by this factor to be chosen.
SEASONALITY_MARGIN = 0.95
# The seasonality choice compares the candidates' errors over about this many hours.
CHOICE_MEMORY_HOURS = 14 * 24.0
EARLY_S = 299.0
EPOCH_MONDAY_OFFSET_H = 72  # 1970-01-01 was a Thursday: +3 days puts hour 0 on a Monday
_PERIODS = {"none": 1, "daily": 24, "weekly": 168}


@dataclass(frozen=True, slots=True)
class Point:
    """What the detector says about one point, with only the data before it."""

    ts: float
    value: float
    expected: float
    expected_low: float
    expected_high: float
    score: float
    is_anomaly: bool
    learning: bool
    seasonality: str


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs a third of
# an update; the detector fills the slots directly instead (the same object, as frozen to callers).
_POINT_NEW = object.__new__
_POINT_SET = tuple(getattr(Point, name).__set__ for name in Point.__slots__)


def _point_make(
    ts: float,
    value: float,
    expected: float,
    low: float,
    high: float,
    score: float,
    is_anomaly: bool,
    learning: bool,
    seasonality: str,
) -> Point:
    point = _POINT_NEW(Point)
    s_ts, s_value, s_expected, s_low, s_high, s_score, s_anomaly, s_learning, s_seasonality = _POINT_SET
    s_ts(point, ts)
    s_value(point, value)
    s_expected(point, expected)
    s_low(point, low)
    s_high(point, high)
    s_score(point, score)
    s_anomaly(point, is_anomaly)
    s_learning(point, learning)
    s_seasonality(point, seasonality)
    return point


def epoch_seconds(ts: dt.datetime | float | int) -> float:
    """Epoch seconds of a timestamp; a datetime must be time-zone aware (it is read in UTC)."""
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            raise ValueError("timestamp has no time zone (give a UTC offset or Z)")
        return ts.timestamp()
    seconds = float(ts)
    if not math.isfinite(seconds):
        raise ValueError("timestamp is not a finite number")
    return seconds


class _Model:
    """Robust additive Holt-Winters for one seasonality: the baseline one candidate keeps."""

    __slots__ = (
        "first",
        "level",
        "log",
        "mae",
        "n_err",
        "period",
        "rebase_left",
        "run",
        "season",
        "spread",
        "tail",
        "trend",
        "visits",
    )

    def __init__(self, period: int, log: bool = False) -> None:
        self.period = period
        self.log = log  # values are log(1 + value): a shift is a ratio, the floor a relative one
        self.level: float | None = None
        self.trend = 0.0
        self.season = [0.0] * period
        self.visits = [0] * period
        self.spread = 0.0
        self.tail = 0.0  # the TAIL_SHARE upper quantile of |one-step error|, tracked step by step
        self.n_err = 0  # errors the spread has learned from
        self.mae = 0.0  # exponentially weighted |one-step error|, to choose the seasonality
        # [value, expected] of consecutive points beyond SHIFT_Z on one side, or of the points
        # collected after a restart to learn the new level from.
        self.run: list[list[float]] = []
        self.rebase_left = 0  # points still to collect after restart() before the level is set again
        # Until the first cycle is detrended: [first bucket, points in the first cycle, points
        # since the start, sum and count of the errors at the start of the second cycle, hours
        # since the start].
        self.first: list[float] | None = None

    def neighbour_season(self, bucket: int) -> float | None:
        """For an hour never seen (a missing point): the mean of the nearest seen hours around it."""
        period, visits, season = self.period, self.visits, self.season
        for distance in (1, 2, 3):
            seen = [season[b] for b in ((bucket - distance) % period, (bucket + distance) % period) if visits[b]]
            if seen:
                return sum(seen) / len(seen)
        return None

    def learn(self, bucket: int, value: float, expected: float, sigma: float, hours: float) -> None:
        """Learn from one point whose forecast was ``expected`` (winsorised updates).

        The steady state (a known hour, a grown spread, no restart pending) is written out flat:
        it is almost every point, and the engine and backtests run millions of them. It does
        exactly what ``_learn_any`` does in that state."""
        n_err = self.n_err
        visits = self.visits[bucket]
        if n_err < 10 or not visits or self.first is not None or self.rebase_left:
            self._learn_any(bucket, value, expected, sigma, hours)
            return
        error = value - expected
        abs_error = -error if error < 0 else error
        rate = hours / CHOICE_MEMORY_HOURS
        warm = 1.0 / (n_err + 1)
        mae = self.mae
        self.mae = mae + (abs_error - mae) * (warm if warm > rate else (rate if rate < 1.0 else 1.0))
        limit = WINSOR_Z * sigma
        if abs_error <= limit:
            clipped = error
            capped = abs_error
        else:
            clipped = limit if error > 0 else -limit
            capped = limit
        outlier = abs_error > SHIFT_Z * sigma
        if not outlier:
            spread = self.spread
            self.spread = spread + (capped - spread) * (ETA if n_err > 30 else warm)
        tail = self.tail
        if hours >= 1.0:
            self.tail = tail * (_TAIL_UP if abs_error > tail else _TAIL_DOWN)
        else:
            step = TAIL_RATE * hours
            self.tail = tail * (1.0 + step * (1.0 - TAIL_SHARE) if abs_error > tail else 1.0 - step * TAIL_SHARE)
        self.n_err = n_err + 1
        trend = self.trend
        self.level = self.level + PHI * trend + ALPHA * clipped
        if hours >= 1.0:
            self.trend = PHI * trend + BETA * ALPHA * clipped
            gamma = GAMMA if visits >= 4 else 1.0 / (visits + 1)
        else:
            self.trend = PHI * trend + BETA * hours * ALPHA * clipped
            gamma = GAMMA * hours if visits >= 4 else 1.0 / (visits + 1)
        if self.period > 1:
            self.season[bucket] += gamma * (1.0 - ALPHA) * clipped
        self.visits[bucket] = visits + 1
        run = self.run
        if outlier:
            if run and (run[-1][0] > run[-1][1]) != (error > 0):
                run.clear()
            run.append([value, expected])
        elif run:
            run.clear()

    def _learn_any(self, bucket: int, value: float, expected: float, sigma: float, hours: float) -> None:
        """``learn`` in any state: the first point, the first cycle, a restart, a new hour."""
        if self.level is None:
            self.level = value
            self.visits[bucket] = 1
            if self.period > 1:
                self.first = [bucket, 1, 1, 0.0, 0, 0.0]
            return
        first = self.first
        if first is not None:
            first[2] += 1
            first[5] += hours
            if first[4] == 0 and first[5] < self.period:
                first[1] += 1
            elif self._first_cycle_detrend(value - expected):
                return
        if self.rebase_left > 0:
            self.run.append([value, expected])
            self.rebase_left -= 1
            if self.rebase_left == 0:
                self._rebase()
            return
        visits = self.visits[bucket]
        error = value - expected
        if visits == 0:
            # First visit of this hour: the profile takes the whole difference, the level none.
            self.season[bucket] = value - self.level - PHI * self.trend
            self.visits[bucket] = 1
            self.level += PHI * self.trend
            self.trend *= PHI
            return
        abs_error = -error if error < 0 else error
        # The spread and the seasonality choice learn from forecasts of a known hour only.
        # Over weeks, not points: a weekly pattern shows in the error only once a week.
        rate = hours / CHOICE_MEMORY_HOURS
        warm = 1.0 / (self.n_err + 1)
        self.mae += (abs_error - self.mae) * (warm if warm > rate else (rate if rate < 1.0 else 1.0))
        # While the spread is young nothing is clipped.
        learning = self.n_err < 10
        limit = WINSOR_Z * sigma
        clipped = error if learning or -limit <= error <= limit else (limit if error > 0 else -limit)
        # A point beyond SHIFT_Z spreads is an outlier: it must not widen the band it broke.
        if learning or abs_error <= SHIFT_Z * sigma:
            capped = abs_error if learning or abs_error <= limit else limit
            self.spread += (capped - self.spread) * (ETA if self.n_err > 30 else 1.0 / (self.n_err + 1))
        # The tail moves by the same step whatever the size of the error beyond it: a spike
        # moves it once, and errors that are large but frequent (a count that is mostly 0 and
        # often 1) widen it until they are rare again; the spread above cannot, as it caps them.
        if learning:
            self.tail = self.spread * NORMAL_SIGMA / TAIL_SIGMA
        else:
            step = TAIL_RATE * (hours if hours < 1.0 else 1.0)
            self.tail *= 1.0 + step * (1.0 - TAIL_SHARE) if abs_error > self.tail else 1.0 - step * TAIL_SHARE
        self.n_err += 1
        alpha = ALPHA
        # Per hour of data, not per point: five-minute points visit an hour twelve times.
        gamma = (GAMMA if hours >= 1.0 else GAMMA * hours) if visits >= 4 else 1.0 / (visits + 1)
        if self.period == 1:
            gamma = 0.0
        level = self.level + PHI * self.trend + alpha * clipped
        self.trend = PHI * self.trend + (BETA if hours >= 1.0 else BETA * hours) * alpha * clipped
        self.level = level
        self.season[bucket] += gamma * (1.0 - alpha) * clipped
        self.visits[bucket] = visits + 1
        # A change point: SHIFT_Z exceeded on one side point after point.
        if abs_error > SHIFT_Z * sigma and not learning:
            run = self.run
            if run and (run[-1][0] > run[-1][1]) != (error > 0):
                run.clear()
            run.append([value, expected])
        else:
            self.run.clear()

    def _first_cycle_detrend(self, error: float) -> bool:
        """The second cycle starts: collect its first errors, then take their mean as the drift
        over one cycle. The first cycle's profile was learned against a level that stood still,
        so a trend in it would stay in the profile (late hours too high) and lag ever after:
        the drift is moved from the profile into the level and trend. True while collecting."""
        first = self.first
        first[3] += error
        first[4] += 1
        if first[4] < max(3, self.period // 28):
            return True
        start, cycle_points, points = int(first[0]), first[1], first[2]
        per_point = first[3] / first[4] / cycle_points
        for bucket in range(self.period):
            if self.visits[bucket]:
                self.season[bucket] -= per_point * ((bucket - start) % self.period) * cycle_points / self.period
        self.level += per_point * points
        self.trend = per_point
        self.first = None
        return True

    def shift_adapt(self, shift_points: int) -> bool:
        """Move the level onto a persistent shift; True when it did."""
        if len(self.run) < shift_points:
            return False
        self._rebase()
        return True

    def restart(self, points: int) -> None:
        """Collect ``points`` points, then set the level (and scale) from them (``_rebase``)."""
        self.run.clear()
        self.rebase_left = points

    def _rebase(self) -> None:
        """Move the baseline onto the points in ``run``: shifted (value = expected + d) or scaled
        (value = expected × r), whichever fits them better. A new version that doubles the rows
        scales the daily shape too; one that adds a fixed amount of work only shifts it."""
        pairs, self.run = self.run, []
        if not pairs or self.level is None:
            return
        if self.log:
            self._rebase_log(pairs)
        else:
            self._rebase_linear(pairs)
        self.trend = 0.0
        # The shape is kept, but the next visit of each hour moves it strongly again.
        self.visits = [min(v, 1) for v in self.visits]

    def _rebase_linear(self, pairs: list[list[float]]) -> None:
        differences = sorted(value - expected for value, expected in pairs)
        shift = differences[len(differences) // 2]
        shifted_error = sum(abs(value - expected - shift) for value, expected in pairs)
        if all(expected > 0 and value >= 0 for value, expected in pairs):
            ratios = sorted(value / expected for value, expected in pairs)
            ratio = ratios[len(ratios) // 2]
            if sum(abs(value - ratio * expected) for value, expected in pairs) < shifted_error:
                self.level *= ratio
                self.season = [part * ratio for part in self.season]
                self.spread *= ratio
                self.tail *= ratio
                return
        self.level += shift

    def _rebase_log(self, pairs: list[list[float]]) -> None:
        """In log space a shift of the level is a scaling; a fixed amount added is not, so that
        case re-draws every hour of the profile in the series' units (judged in them too)."""
        differences = sorted(value - expected for value, expected in pairs)
        log_shift = differences[len(differences) // 2]
        units = [(math.expm1(value), math.expm1(expected)) for value, expected in pairs]
        added = sorted(value - expected for value, expected in units)
        shift = added[len(added) // 2]
        ratio = math.exp(log_shift)
        scaled_error = sum(abs(value - (1.0 + expected) * ratio + 1.0) for value, expected in units)
        if sum(abs(value - expected - shift) for value, expected in units) >= scaled_error:
            self.level += log_shift
            return
        base = self.level + PHI * self.trend
        self.season = [
            math.log1p(max(math.expm1(base + part) + shift, 0.0)) - base if seen else part
            for part, seen in zip(self.season, self.visits, strict=True)
        ]
        self.level = base

    # The state as one list, in this order (compact JSON: the engine keeps one per series).
    _FIELDS = ("level", "trend", "spread", "tail", "n_err", "mae", "rebase_left", "first", "run", "season", "visits")

    def to_list(self) -> list[Any]:
        return [getattr(self, name) for name in self._FIELDS]

    @classmethod
    def from_list(cls, period: int, log: bool, data: list[Any]) -> _Model:
        if not isinstance(data, list) or len(data) != len(cls._FIELDS):
            raise ValueError("state of a profile is not a list of its fields")
        model = cls(period, log=log)
        level, trend, spread, tail, n_err, mae, rebase_left, first, run, season, visits = data
        model.level = None if level is None else float(level)
        model.trend, model.spread, model.tail, model.mae = float(trend), float(spread), float(tail), float(mae)
        model.n_err, model.rebase_left = int(n_err), int(rebase_left)
        model.first = None if first is None else [float(f) for f in first]
        model.run = [[float(value), float(expected)] for value, expected in run]
        model.season = [float(part) for part in season]
        model.visits = [int(v) for v in visits]
        if len(model.season) != period or len(model.visits) != period:
            raise ValueError("state does not match its seasonality")
        return model


class SeriesDetector:
    """The anomaly detector of one series: call ``update`` with each point in time order.

    ``sensitivity`` picks the score a point must reach (``SENSITIVITY_SCORE``); ``direction``
    which side may alarm; ``seasonality`` forces one (``auto`` detects it). Nothing fires
    before ``min_points`` points covering ``min_span_hours`` hours (the learning state), nor
    for ``relearn_points`` points after ``restart``. ``shift_points`` consecutive points far
    out on one side are taken as a level shift and learned.
    """

    # 2: log space, the tail spread, each profile as a list (version 1 states are refused).
    STATE_VERSION = 2

    def __init__(
        self,
        *,
        sensitivity: str = Sensitivity.MEDIUM,
        direction: str = Direction.BOTH,
        seasonality: str = "auto",
        min_points: int = 24,
        min_span_hours: float = 8 * 24,
        relearn_points: int = 6,
        shift_points: int = 12,
    ) -> None:
        if sensitivity not in SENSITIVITY_SCORE:
            raise ValueError(f"unknown sensitivity {sensitivity!r} (low, medium, high)")
        if direction not in Direction.__members__.values():
            raise ValueError(f"unknown direction {direction!r} (up, down, both)")
        if seasonality != "auto" and seasonality not in _PERIODS:
            raise ValueError(f"unknown seasonality {seasonality!r} (auto, none, daily, weekly)")
        self.sensitivity = str(sensitivity)
        self.direction = str(direction)
        self.seasonality = str(seasonality)
        self.min_points = min_points
        self.min_span_hours = min_span_hours
        self.relearn_points = relearn_points
        self.shift_points = shift_points
        self._threshold = SENSITIVITY_SCORE[sensitivity]
        self._z = SENSITIVITY_Z[sensitivity]
        self._watch = Direction(direction)
        names = [str(name) for name in _PERIODS] if seasonality == "auto" else [str(seasonality)]
        # Scored in log(1 + value) while every value seen is non-negative (see _linear_from_now).
        self.log = True
        self.models: dict[str, _Model] = {name: _Model(_PERIODS[name], log=True) for name in names}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.points = 0
        self.relearn_left = 0
        self.restart_at: float | None = None

    # -- the stream ---------------------------------------------------------------------------

    def chosen(self) -> str:
        """The seasonality in use: the forced one, or the candidate with the smallest error."""
        if self.seasonality != "auto":
            return self.seasonality
        best = "none"
        best_mae = None
        for name in _PERIODS:
            model = self.models[name]
            if model.n_err < 16:
                break
            if best_mae is None or model.mae < SEASONALITY_MARGIN * best_mae:
                best, best_mae = name, model.mae
        return best

    def learning(self, at: float | None = None) -> bool:
        """True while the history before ``at`` (default: the last point) is too short to fire."""
        if self.relearn_left > 0 or self.points < self.min_points or self.first_ts is None:
            return True
        at = self.last_ts if at is None else at
        return (at - self.first_ts) < self.min_span_hours * 3600.0

    def update(self, ts: dt.datetime | float | int, value: float) -> Point:
        """Score ``value`` at ``ts`` against the baseline so far, then learn from it."""
        if ts.__class__ is float and ts - ts == 0.0:  # finite epoch seconds: the engine's case
            seconds = ts
        elif isinstance(ts, dt.datetime) and ts.tzinfo is not None:
            seconds = ts.timestamp()
        else:
            seconds = epoch_seconds(ts)
        value = float(value)
        if value - value != 0.0:
            raise ValueError("value is not a finite number")
        if self.last_ts is not None and seconds <= self.last_ts:
            raise ValueError("timestamps must increase")
        if self.restart_at is not None and seconds >= self.restart_at:
            self._restart_now()
        if value < 0.0 and self.log:
            self._linear_from_now()
        x = math.log1p(value) if self.log else value
        # A point up to EARLY_S before the hour counts for that hour, so a run scheduled at 02:00
        # that starts at 01:58 is in the same bucket as one starting at 02:07 (and five-minute
        # data still falls in its own hour but for the last point).
        hour = int(((seconds + EARLY_S) // 3600.0 + EPOCH_MONDAY_OFFSET_H) % 168)
        hours = 1.0 if self.last_ts is None else (seconds - self.last_ts) / 3600.0
        chosen = self.chosen()
        # self.learning(seconds), written out: it runs for every point.
        first_ts = self.first_ts
        learning = (
            self.relearn_left > 0
            or self.points < self.min_points
            or first_ts is None
            or (seconds - first_ts) < self.min_span_hours * 3600.0
        )
        # Each profile forecasts the point, then learns from it (they are independent). An hour
        # the chosen profile has never seen (a missing point last week) is scored by the next
        # simpler profile that has seen it; with none, the point cannot be judged yet.
        scored = None
        simpler = True  # this profile is the chosen one or a simpler one
        for name, model in self.models.items():
            period = model.period
            bucket = 0 if period == 1 else (hour % 24 if period == 24 else hour)
            if model.level is None:
                expected, sigma = x, 0.0
            else:
                known = model.visits[bucket] > 0
                if not known and period > 1 and (nearby := model.neighbour_season(bucket)) is not None:
                    model.season[bucket], known = nearby, True
                expected = model.level + PHI * model.trend + model.season[bucket]
                # The spread as a standard deviation: the larger of the mean-absolute and the tail
                # estimates, never under the floor (a share of the value).
                spread = model.spread * NORMAL_SIGMA
                tail = model.tail * TAIL_SIGMA
                if tail > spread:
                    spread = tail
                floor = LOG_FLOOR if model.log else RELATIVE_FLOOR * abs(expected) + ABSOLUTE_FLOOR
                sigma = spread if spread > floor else floor
                if known and simpler:
                    scored = (expected, sigma, name)
            if name == chosen:
                simpler = False
            model.learn(bucket, x, expected, sigma, hours)
            if model.run:
                model.shift_adapt(self.shift_points)
        if scored is None:
            point = self._point(seconds, value, x, x, 0.0, True, chosen)
        else:
            point = self._point(seconds, value, x, scored[0], scored[1], learning, scored[2])
        if self.first_ts is None:
            self.first_ts = seconds
        self.last_ts = seconds
        self.points += 1
        if self.relearn_left > 0:
            self.relearn_left -= 1
        return point

    def _point(
        self, ts: float, value: float, x: float, expected: float, sigma: float, learning: bool, name: str
    ) -> Point:
        half = self._z * sigma
        error = x - expected
        if self._watch == Direction.BOTH:
            distance = error if error > 0 else -error
        elif self._watch == Direction.UP:
            distance = error if error > 0 else 0.0
        else:
            distance = -error if error < 0 else 0.0
        if learning or sigma <= 0.0:
            score = 0.0
        else:
            z = distance / sigma / SCORE_Z_SCALE
            score = 1.0 - math.exp(-z * z)
        low, high = expected - half, expected + half
        if self.log:
            # Back to the series' units: the band is as wide in ratios, so wider above than below.
            expected, low, high = math.expm1(expected), math.expm1(low), math.expm1(high)
        return _point_make(
            ts, value, expected, low, high, score, score >= self._threshold and not learning, learning, name
        )

    # -- known change points ------------------------------------------------------------------

    def restart(self, at: dt.datetime | float | int) -> None:
        """A known change point (a new loader version approved at ``at``): from the first point
        at or after ``at`` the level is learned again and the detector is learning for a while."""
        self.restart_at = epoch_seconds(at)
        if self.last_ts is not None and self.restart_at <= self.last_ts:
            self._restart_now()

    def _linear_from_now(self) -> None:
        """A negative value: the series is not a count or a size, and log(1 + value) no longer
        exists. The baseline learned in log space means nothing in the series' units, so the
        detector starts over in them (learning again), once."""
        self.log = False
        self.models = {name: _Model(model.period, log=False) for name, model in self.models.items()}
        self.first_ts = None
        self.points = 0

    def _restart_now(self) -> None:
        self.restart_at = None
        self.relearn_left = self.relearn_points
        for model in self.models.values():
            model.restart(self.relearn_points)

    # -- state --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-safe data (a few kilobytes with the weekly profile)."""
        return {
            "version": self.STATE_VERSION,
            "config": {
                "sensitivity": self.sensitivity,
                "direction": self.direction,
                "seasonality": self.seasonality,
                "min_points": self.min_points,
                "min_span_hours": self.min_span_hours,
                "relearn_points": self.relearn_points,
                "shift_points": self.shift_points,
            },
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "points": self.points,
            "relearn_left": self.relearn_left,
            "restart_at": self.restart_at,
            "log": self.log,
            "models": {name: model.to_list() for name, model in self.models.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesDetector:
        if data.get("version") != cls.STATE_VERSION:
            raise ValueError(f"unknown detector state version {data.get('version')!r}")
        detector = cls(**data["config"])
        detector.first_ts = data["first_ts"]
        detector.last_ts = data["last_ts"]
        detector.points = data["points"]
        detector.relearn_left = data["relearn_left"]
        detector.restart_at = data["restart_at"]
        if set(data["models"]) != set(detector.models):
            raise ValueError("state does not match its seasonality setting")
        detector.log = bool(data["log"])
        detector.models = {
            name: _Model.from_list(_PERIODS[name], detector.log, data["models"][name]) for name in detector.models
        }
        return detector
