"""Diagnostics: listeners that watch values as ops run (flopgrad.hooks).

`anomaly`: `detect_anomaly()`, the first op that turns finite inputs into NaN or inf
raises `AnomalyError` (docs/health.md).

>>> import flopgrad as fg
>>> fg.diagnostics.is_anomaly_enabled()
False
"""

from flopgrad.diagnostics.anomaly import (
    AnomalyDetector,
    AnomalyError,
    detect_anomaly,
    is_anomaly_enabled,
)

__all__ = ["AnomalyDetector", "AnomalyError", "detect_anomaly", "is_anomaly_enabled"]
