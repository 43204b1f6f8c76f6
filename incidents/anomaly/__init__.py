"""Anomaly detection without thresholds: a learned, seasonal, streaming baseline per series.

Pure Python and free of Django models, so the engine, ``manage.py anomaly_score`` and the
benchmarks share one detector (see docs/anomaly-detection.md).
"""

from incidents.anomaly.detector import (
    SENSITIVITY_SCORE,
    Direction,
    Point,
    Seasonality,
    Sensitivity,
    SeriesDetector,
)

__all__ = ["SENSITIVITY_SCORE", "Direction", "Point", "Seasonality", "Sensitivity", "SeriesDetector"]
