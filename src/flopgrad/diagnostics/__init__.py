"""Diagnostics: listeners that watch values as ops run (flopgrad.hooks).

- `anomaly`: `detect_anomaly()`, the first op that turns finite inputs into NaN or inf
  raises `AnomalyError` (docs/health.md);
- `grad_health`: `health`, `Health`, per-layer gradient health, and `health_demo`, its
  demonstration networks.

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
from flopgrad.diagnostics.grad_health import Health, HealthReport, health
from flopgrad.diagnostics.health_demo import DemoCase, health_demo

__all__ = ["AnomalyDetector", "AnomalyError", "detect_anomaly", "is_anomaly_enabled",
           "health", "Health", "HealthReport", "health_demo", "DemoCase"]
