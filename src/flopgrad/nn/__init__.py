"""Neural-network building blocks. `flopgrad.nn.functional` holds the functions."""

from flopgrad.nn import functional

__all__ = ["functional"]
