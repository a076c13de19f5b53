"""What a command yields before its results: the CLI's progress display starts from these."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alphapulse_onnx.origin.check import Planner


@dataclass(frozen=True)
class Started:
    """The work is about to begin on ``total`` items (models)."""

    total: int


@dataclass(frozen=True)
class EnvironmentStarted:
    """An origin environment is being made (``--origin``): a minute or so, once per cache."""

    label: str  # "scikit-learn 1.3.2"
    models: int  # how many models wait for it


@dataclass(frozen=True)
class EnvironmentReady:
    """An origin environment was made, or could not be (``problem``: its models are skipped)."""

    label: str
    seconds: float
    problem: str | None = None


def prepare_environments(planner: Planner) -> Iterator[EnvironmentStarted | EnvironmentReady]:
    """Make every environment ``planner``'s models need and the cache lacks, saying so."""
    for spec, models in planner.missing():
        yield EnvironmentStarted(spec.label, models)
        started = time.monotonic()
        problem = planner.create(spec)
        yield EnvironmentReady(spec.label, time.monotonic() - started, problem)
