"""What a command yields before its results: the CLI's progress display starts from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Started:
    """The work is about to begin on ``total`` items (models)."""

    total: int
