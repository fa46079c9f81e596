"""The bill as people read it: `fg.profile()` yields a `Bill`, whose views are tables,
rule checks and exports (JSON, CSV, Chrome trace).

The bill reads the events a Ledger recorded (`flopgrad.ledger.Event`); nothing here
reaches into the engine.
"""

from __future__ import annotations

from flopgrad.report.bill import Bill, profile
from flopgrad.report.roofline import Machine, machine
from flopgrad.report.rules import Rule
from flopgrad.report.tables import Row, human, human_bytes

__all__ = ["Bill", "Machine", "Row", "Rule", "human", "human_bytes", "machine", "profile"]
