"""What ``apo bench`` measures and keeps in the manifest: tuned session settings, timings,
variants and the machine they were measured on.

Records of ``manifest.json``, read leniently: a hand-edited manifest may hold anything there,
so keys a record does not know are dropped, missing ones read as null, and a value that is not
an object reads as absent. Nothing here raises, so a bad bench record never makes a manifest
unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from alphapulse_onnx.parity import ParityReport
from alphapulse_onnx.runtime import SessionSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ApoPath = Literal["store", "session"]  # apo's path as bench timed it: Store, or a session
VariantName = Literal["fp16", "int8"]
VariantStatus = Literal["kept", "rejected", "unchanged", "unavailable"]


_Record = TypeVar("_Record", bound="DataclassInstance")


def _known(record: type[_Record], raw: Mapping[str, Any], **parsed: Any) -> _Record:
    """``record`` from the keys of ``raw`` it has fields for, nested records given ``parsed``."""
    values = {f.name: raw.get(f.name) for f in fields(record)}
    return record(**{**values, **parsed})


def json_object(value: Any) -> dict[str, Any] | None:
    """``value`` when it is a non-empty JSON object, else None (absent)."""
    return value if isinstance(value, dict) and value else None


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects in ``value`` when it is a JSON array, else none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class TuningSummary:
    """``session.tuned``: where and how apo bench chose the settings."""

    provider: str
    cpu: str
    cores: int
    worst_regret: float  # chosen p50 / fastest p50, at the batch size where the choice loses most
    candidates: int  # distinct settings timed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TuningSummary:
        return _known(cls, raw)


@dataclass(frozen=True)
class SessionBand:
    """One of ``session.bands``: the fastest settings at a batch size, beside the default's and
    scikit-learn's times."""

    batch_size: int
    settings: SessionSettings
    p50_ms: float
    default_p50_ms: float | None
    sklearn_p50_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "settings": self.settings.to_json()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SessionBand:
        settings = SessionSettings.from_json(json_object(raw.get("settings")))
        return _known(cls, raw, settings=settings)


@dataclass(frozen=True)
class SessionRecord:
    """An entry's ``session``: the settings ``Store`` and ``apo predict`` open sessions with
    (flat, at the top level) and, when apo bench tuned them, how it chose."""

    settings: SessionSettings
    tuned: TuningSummary | None = None
    bands: tuple[SessionBand, ...] = ()

    def to_json(self) -> dict[str, Any]:
        raw = self.settings.to_json()
        if self.tuned is not None:  # hand-written settings stay as flat as they were written
            raw["tuned"] = self.tuned.to_json()
        if self.bands:
            raw["bands"] = [band.to_json() for band in self.bands]
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SessionRecord:
        tuned = json_object(raw.get("tuned"))
        return cls(
            settings=SessionSettings.from_json(dict(raw)),
            tuned=TuningSummary.from_json(tuned) if tuned else None,
            bands=tuple(SessionBand.from_json(band) for band in _objects(raw.get("bands"))),
        )


@dataclass(frozen=True)
class VariantReport:
    """A variant as apo bench reports it: built, changed, validated, kept (and where)."""

    name: VariantName
    status: VariantStatus
    note: str
    nodes_total: int = 0
    nodes_changed: int = 0
    changed_ops: tuple[str, ...] = ()
    tool: str | None = None
    parity: ParityReport | None = None
    artifact: str | None = None  # path relative to the manifest folder, when kept
    sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "note": self.note,
            "nodes_total": self.nodes_total,
            "nodes_changed": self.nodes_changed,
            "changed_ops": list(self.changed_ops),
            "tool": self.tool,
            "parity": self.parity.to_json() if self.parity else None,
            "artifact": self.artifact,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> VariantReport:
        parity = json_object(raw.get("parity"))
        changed_ops = raw.get("changed_ops")
        return _known(
            cls,
            raw,
            changed_ops=tuple(changed_ops) if isinstance(changed_ops, list) else (),
            parity=ParityReport.from_json(parity) if parity else None,
        )


@dataclass(frozen=True)
class BenchResult:
    """One of ``bench.results``: an engine (and variant) on a provider at a batch size."""

    engine: str  # "sklearn", "onnx" (apo's own path), "ort-bare" (a default session)
    variant: str  # "-" for scikit-learn, else "fp32", "fp16" or "int8"
    provider: str | None  # None for scikit-learn
    batch_size: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    calls: int
    rows_per_s: float
    speedup_vs_sklearn: float | None  # scikit-learn's p50 / this p50, measured in the same run
    parity: str  # "reference" (scikit-learn itself), "passed" or "failed: REASON"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BenchResult:
        return _known(cls, raw)


@dataclass(frozen=True)
class BenchRecord:
    """An entry's ``bench``: what apo bench measured for the model, and how."""

    measured: str  # ISO 8601, UTC, to the second
    batch_sizes: tuple[int, ...]
    budget_s: float
    repeat: int | None
    apo_path: ApoPath | None
    settings: SessionSettings  # what apo's own path was timed with
    providers: Mapping[str, str]  # "runs", or "does not run here: REASON"
    variants: Mapping[str, VariantReport]  # by variant name
    results: tuple[BenchResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "batch_sizes": list(self.batch_sizes),
            "budget_s": self.budget_s,
            "repeat": self.repeat,
            "apo_path": self.apo_path,
            "settings": self.settings.to_json(),
            "providers": dict(self.providers),
            "variants": {name: report.to_json() for name, report in self.variants.items()},
            "results": [result.to_json() for result in self.results],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BenchRecord:
        batch_sizes = raw.get("batch_sizes")
        variants = json_object(raw.get("variants")) or {}
        return _known(
            cls,
            raw,
            batch_sizes=tuple(batch_sizes) if isinstance(batch_sizes, list) else (),
            settings=SessionSettings.from_json(json_object(raw.get("settings"))),
            providers=dict(json_object(raw.get("providers")) or {}),
            variants={
                name: VariantReport.from_json(report)
                for name, report in variants.items()
                if isinstance(report, dict)
            },
            results=tuple(BenchResult.from_json(result) for result in _objects(raw.get("results"))),
            # Manifests benched before 0.2 name apo's serving path by the class's old name.
            apo_path="store" if raw.get("apo_path") == "registry" else raw.get("apo_path"),
        )


@dataclass(frozen=True)
class MachineProvider:
    """One of ``machine.providers``: whether the provider runs here, why not, and on what."""

    runs: bool
    reason: str | None
    device: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> MachineProvider:
        return _known(cls, raw)


@dataclass(frozen=True)
class Machine:
    """The manifest's ``machine``: where apo bench measured its figures."""

    cpu: str
    cores: int | None
    platform: str
    python: str
    apo: str
    providers: Mapping[str, MachineProvider]
    versions: Mapping[str, str | None]  # the onnxruntime, ONNX and scikit-learn stack
    measured: str  # ISO 8601, UTC, to the second
    load_average_1m: float | None  # None where the platform has no load average

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "providers": {name: p.to_json() for name, p in self.providers.items()},
            "versions": dict(self.versions),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Machine:
        providers = json_object(raw.get("providers")) or {}
        return _known(
            cls,
            raw,
            providers={
                name: MachineProvider.from_json(p)
                for name, p in providers.items()
                if isinstance(p, dict)
            },
            versions=dict(json_object(raw.get("versions")) or {}),
        )
