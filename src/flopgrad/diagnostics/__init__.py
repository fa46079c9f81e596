"""fg.diagnostics: gradient health (`health`, `Health`) and its demonstration."""

from flopgrad.diagnostics.grad_health import Health, HealthReport, health
from flopgrad.diagnostics.health_demo import DemoCase, health_demo

__all__ = ["health", "Health", "HealthReport", "health_demo", "DemoCase"]
