"""The detectors the evaluation compares: the two baselines users have today, and library candidates.

Every detector is streaming: ``update(ts, value)`` sees one point, in time order, and answers at
once from what it has seen so far (never the future). It returns ``True``/``False``, a score in
``[0, 1]`` (an alarm at 0.5 and above), or an object with an ``is_anomaly`` attribute (the
platform's detector returns such a point). A detector that is still learning answers ``False``.

The baselines are pure Python. The candidates import their library inside the constructor, so
this module imports without numpy, statsmodels or ruptures installed.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta
from typing import Any, Protocol


class Detector(Protocol):
    """What the evaluation needs of a detector: one point in, one answer out."""

    def update(self, ts: datetime, value: float) -> Any: ...


class StaticThreshold:
    """Baseline (a): the hand-set threshold a user picks after looking at the first week.

    Learns the mean and standard deviation of the first ``learn`` of data, then alarms on any value
    outside ``mean ± k·std`` for ever after. ``k = 3`` is the rule of thumb users reach for.
    """

    def __init__(self, k: float = 3.0, learn: timedelta = timedelta(days=7)) -> None:
        self.k = k
        self.learn = learn
        self.first: datetime | None = None
        self.seen: list[float] = []
        self.low = self.high = math.nan

    def update(self, ts: datetime, value: float) -> bool:
        if self.first is None:
            self.first = ts
        if ts - self.first < self.learn:
            self.seen.append(value)
            return False
        if self.seen:
            mean = sum(self.seen) / len(self.seen)
            std = math.sqrt(sum((v - mean) ** 2 for v in self.seen) / len(self.seen))
            self.low, self.high = mean - self.k * std, mean + self.k * std
            self.seen = []
        return value < self.low or value > self.high


class RollingZScore:
    """Baseline (b): Elementary's z-score test, point by point.

    The mean and standard deviation of the last ``window`` points (anomalies included, as in
    Elementary, which trains on the whole training period); a point alarms when
    ``|value - mean| / std > z``. Silent until ``min_points`` points are in the window.
    """

    def __init__(self, window: int, z: float = 3.0, min_points: int | None = None) -> None:
        self.window = window
        self.z = z
        self.min_points = min_points if min_points is not None else max(window // 7, 2)
        self.values: deque[float] = deque()
        self.total = 0.0
        self.total_sq = 0.0

    def update(self, ts: datetime, value: float) -> bool:
        alarm = False
        n = len(self.values)
        if n >= self.min_points:
            mean = self.total / n
            var = max(self.total_sq / n - mean * mean, 0.0)
            std = math.sqrt(var)
            alarm = abs(value - mean) > self.z * std if std > 0 else value != mean
        self.values.append(value)
        self.total += value
        self.total_sq += value * value
        if len(self.values) > self.window:
            old = self.values.popleft()
            self.total -= old
            self.total_sq -= old * old
        return alarm


class StlResidual:
    """Candidate (c): statsmodels STL on a sliding window, refit every ``refit`` points.

    Between refits the expected value is the last fit's trend plus the seasonal component one
    period back at the same phase; the spread is the median absolute deviation of the fit's
    residuals (robust STL, so the outliers it fits around do not widen it), or for skewed and
    discrete data (error counts, where that deviation is near zero) the standard deviation of the
    residuals without their top 1 %, or the median absolute deviation of its own recent prediction
    errors (a fit over few cycles follows the noise, so its residuals understate the error of its
    forecasts), whichever is largest. A point alarms when its error exceeds ``k`` of those. Silent
    until the window is full.
    """

    def __init__(
        self, period: int, window: int, refit: int, k: float = 4.0, robust: bool = True, log: bool = False
    ) -> None:
        import numpy as np
        from statsmodels.tsa.seasonal import STL

        self._np, self._stl = np, STL
        self.period, self.window, self.refit, self.k, self.robust = period, window, refit, k, robust
        # ETL metrics are non-negative, multiplicative and right-skewed: on log(1 + x) a weekend at
        # half volume and a daily curve are additive, and a long tail is less long.
        self.log = log
        self.values: deque[float] = deque(maxlen=window)
        self.errors: deque[float] = deque(maxlen=window)
        self.since_fit = 0
        self.seasonal: Any = None
        self.trend = 0.0
        self.scale = 0.0
        self.forecast_scale = 0.0

    def _fit(self) -> None:
        np = self._np
        y = np.asarray(self.values, dtype=float)
        result = self._stl(y, period=self.period, robust=self.robust).fit()
        self.seasonal = result.seasonal[-self.period :]
        self.trend = float(result.trend[-1])
        resid = result.resid
        mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        trimmed = resid[np.abs(resid) <= np.quantile(np.abs(resid), 0.99)]
        self.scale = max(mad, float(trimmed.std()))
        self.forecast_scale = 0.0
        if len(self.errors) >= self.period:
            errors = np.asarray(self.errors)
            self.forecast_scale = 1.4826 * float(np.median(np.abs(errors - np.median(errors))))
        self.since_fit = 0

    def update(self, ts: datetime, value: float) -> bool:
        if self.log:
            value = math.log1p(max(value, 0.0))
        alarm = False
        if self.seasonal is not None:
            expected = self.trend + float(self.seasonal[self.since_fit % self.period])
            self.errors.append(value - expected)
            scale = max(self.scale, self.forecast_scale, 1e-9 + 0.01 * abs(expected))
            alarm = abs(value - expected) > self.k * scale
        self.values.append(value)
        self.since_fit += 1
        if len(self.values) == self.window and (self.seasonal is None or self.since_fit >= self.refit):
            self._fit()
        return alarm


class RupturesChange:
    """Candidate (d): a ruptures change-point search (PELT, least-squares cost) on a sliding window.

    Every ``refit`` points the last ``window`` points are segmented; a change point within the
    newest ``refit`` points raises an alarm on the point that triggered the search. Change points
    are what it finds: shifts in level or variance, not single spikes.
    """

    def __init__(self, window: int, refit: int, penalty: float = 10.0, model: str = "l2") -> None:
        import numpy as np
        import ruptures

        self._np, self._rpt = np, ruptures
        self.window, self.refit, self.penalty, self.model = window, refit, penalty, model
        self.values: deque[float] = deque(maxlen=window)
        self.since = 0

    def update(self, ts: datetime, value: float) -> bool:
        self.values.append(value)
        self.since += 1
        if len(self.values) < self.window or self.since < self.refit:
            return False
        self.since = 0
        y = self._np.asarray(self.values, dtype=float)
        y = (y - y.mean()) / (y.std() or 1.0)
        breaks = self._rpt.Pelt(model=self.model, min_size=3, jump=1).fit(y).predict(pen=self.penalty)
        return any(self.window - self.refit <= b < self.window for b in breaks)
