"""fg.diagnostics: gradient health (`health`, `Health`)."""

from flopgrad.diagnostics.grad_health import Health, HealthReport, health

__all__ = ["health", "Health", "HealthReport"]
