"""Cells several views share: parity figures (with the legend that explains them) and origin
checks, written alike by ``apo convert``, ``apo validate`` and ``apo info``."""

from __future__ import annotations

from collections.abc import Iterable

from alphapulse_onnx import render
from alphapulse_onnx.manifest import OriginRecord
from alphapulse_onnx.parity import ParityReport

# What each term of a parity cell means, in the order the legend lists them.
TERMS = {
    "%": "labels as scikit-learn's",
    "p": "largest probability gap",
    "rel": "largest relative gap",
    "abs": "largest absolute gap",
    "score": "in scores or distances",
}


def percent(fraction: float | None) -> str:
    """``100%``, ``99.95%``: whole when every label agreed, two decimals otherwise."""
    if fraction is None:
        return "-"
    return "100%" if fraction >= 1 else f"{fraction * 100:.2f}%"


def _parts(report: ParityReport) -> list[tuple[str, str]]:
    """(term, text) pairs of a parity cell: labels that agree, then the largest difference."""
    parts = []
    if report.label_agreement is not None:
        parts.append(("%", percent(report.label_agreement)))
    score = "score " if report.scores is not None else ""
    if report.max_rel_diff is not None:
        parts.append(("rel", f"{score}rel {render.fmt_float(report.max_rel_diff)}"))
    elif report.max_abs_diff is not None:
        probability = report.label_agreement is not None and not score
        term = "p" if probability else "abs"
        parts.append((term, f"{score}{term} {render.fmt_float(report.max_abs_diff)}"))
    if score:
        parts.append(("score", ""))
    return parts


def parity(report: ParityReport | None) -> str:
    """``100%, p 2e-07`` (classifiers), ``rel 3.4e-07`` (regressors), ``100%, score rel 1e-05``
    (outlier detectors and k-means)."""
    if report is None:
        return "-"
    return ", ".join(text for _, text in _parts(report) if text) or "-"


def terms(reports: Iterable[ParityReport | None]) -> str | None:
    """``% labels as scikit-learn's; p largest probability gap``: what the terms of these
    reports' cells mean; None when there are no figures."""
    used: set[str] = set()
    for report in reports:
        if report is not None:
            used.update(term for term, _ in _parts(report))
    if not used:
        return None
    return "; ".join(f"{term} {meaning}" for term, meaning in TERMS.items() if term in used)


def legend(reports: Iterable[ParityReport | None]) -> str | None:
    """``parity vs scikit-learn: % labels as scikit-learn's; p largest probability gap``, for
    the terms the cells use; None when there are no figures."""
    meaning = terms(reports)
    return None if meaning is None else f"parity vs scikit-learn: {meaning}"


def origin(record: OriginRecord | None) -> str:
    """``ok (1.3.2)``, ``failed (1.3.2)`` or ``skipped``: the origin check and the scikit-learn
    release it ran against."""
    if record is None:
        return "-"
    against = record.versions.get("scikit-learn")
    where = f" ({against})" if against else ""
    if record.status == "passed":
        return f"[green]ok[/]{where}"
    if record.status == "failed":
        return f"[red]failed[/]{where}"
    return "[yellow]skipped[/]"
