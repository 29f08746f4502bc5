"""Requests to answers: pacing, retries, packing, prefetch, outages and budgets. It knows no warehouse."""

from .budget import Budget
from .engine import Engine, EngineSettings
from .outcome import ErrorKind, Outcome, Pending, Request

__all__ = ["Budget", "Engine", "EngineSettings", "ErrorKind", "Outcome", "Pending", "Request"]
