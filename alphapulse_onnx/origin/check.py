"""The origin check, apo's side: which environment each model needs, its answers there, and how
the artifact compares with them.

``Planner`` reads each model file's recorded versions and finds or makes the environments they
need (the command yields progress around ``Planner.create``). ``check`` then runs, per model:
the origin worker answers the probe rows in the model's environment, onnxruntime answers them
with the artifact, and ``parity.compare_answers`` judges the two under the model's tolerances.
A model whose recorded versions are the ones running here is answered in this process.

The outcome is an ``OriginRecord`` (the manifest's ``validation.origin``): passed, failed (the
answers differ) or skipped (the check could not run: no wheel, offline, the loader or the model
failing in the old environment), with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from alphapulse_onnx import loading, parity, runtime
from alphapulse_onnx.errors import first_line
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.manifest import OriginRecord
from alphapulse_onnx.origin import client, environments, pins, recorded
from alphapulse_onnx.origin.environments import Environment, EnvironmentUnavailable, Spec
from alphapulse_onnx.probing import Probe
from alphapulse_onnx.signature import InputSignature, TensorSpec

OriginMode = Literal["check", "require"]
# The versions an origin record lists, in this order (the others a worker reports follow).
_SHOWN = ("scikit-learn", "xgboost", "lightgbm", "numpy", "scipy", "pandas", "joblib", "python")


@dataclass(frozen=True)
class OriginOptions:
    """``--origin`` (``mode="check"``), ``--origin=require``, ``--origin-cache``,
    ``--origin-offline``."""

    mode: OriginMode = "check"
    cache: Path | None = None  # None: environments.default_cache()
    offline: bool = False

    @property
    def cache_dir(self) -> Path:
        chosen = self.cache if self.cache is not None else environments.default_cache()
        return chosen.expanduser().absolute()  # workers start from other folders

    @property
    def required(self) -> bool:
        """A skipped check fails the model (``--origin=require``)."""
        return self.mode == "require"


@dataclass(frozen=True)
class InThisEnvironment:
    """The file's recorded versions are the ones running: its answers are computed here."""

    versions: dict[str, str]


@dataclass(frozen=True)
class Skipped:
    """No origin check for this model, and why; ``versions``: what the check would have used."""

    reason: str
    versions: dict[str, str] = field(default_factory=dict)


Choice = Environment | InThisEnvironment | Skipped


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _pinned(requirements: Sequence[str]) -> dict[str, str]:
    """``{"scikit-learn": "1.3.2", "xgboost": "2.0.3"}`` from the ``==`` requirements."""
    out = {}
    for requirement in requirements:
        name, sep, version = requirement.partition("==")
        if sep:
            out[name.replace("xgboost-cpu", "xgboost")] = version
    return out


def this_environment() -> dict[str, str]:
    """The versions apo itself runs with, as an origin record lists them."""
    import platform

    found = {"python": platform.python_version()}
    for name in ("scikit-learn", "numpy", "scipy", "pandas", "joblib", "xgboost", "lightgbm"):
        version = _installed(name) or (_installed("xgboost-cpu") if name == "xgboost" else None)
        if version is not None:
            found[name] = version
    return found


def wanted(path: Path) -> Spec | InThisEnvironment | Skipped:
    """The environment ``path`` needs, read from the versions it records."""
    if path.suffix.lower() == ".skops":
        return Skipped("skops files are not origin-checked: only pickle and joblib files are")
    found = recorded.read(path)
    version = found.sklearn
    if version is None and found.xgboost_version is not None:
        version = pins.era_of_xgboost(found.xgboost_version).latest
    if version is None:
        return Skipped("the file records no scikit-learn version")
    try:
        spec = spec_for(version, xgboost=found.xgboost_version or found.xgboost,
                        lightgbm=found.lightgbm)  # fmt: skip
    except ValueError:
        return Skipped(f"the file records an unreadable scikit-learn version {version!r}")
    here = this_environment()
    if all(here.get(name) == release for name, release in _pinned(spec.requirements).items()):
        return InThisEnvironment(here)
    return spec


def spec_for(sklearn_version: str, *, xgboost: str | bool = False,
             lightgbm: bool = False) -> Spec:  # fmt: skip
    """The environment for a model saved by ``sklearn_version`` (holding an XGBoost booster of
    the version given, or of the era's when ``True``; a LightGBM one of the era's)."""
    requirements = pins.requirements(sklearn_version, xgboost=xgboost, lightgbm=lightgbm)
    label = ", ".join(f"{name} {release}" for name, release in _pinned(requirements).items())
    return Spec(requirements, label)


class Planner:
    """The environments a set of models needs: found in the cache, made, or skipped, once each."""

    def __init__(self, options: OriginOptions) -> None:
        self.options = options
        self._wanted: dict[Path, Spec | InThisEnvironment | Skipped] = {}
        self._ready: dict[str, Environment | Skipped] = {}

    def add(self, path: Path) -> None:
        if path not in self._wanted:
            self._wanted[path] = wanted(path)

    def _lookup(self, spec: Spec) -> bool:
        """Settle ``spec`` without making anything: found in the cache, or skipped offline."""
        if spec.key in self._ready:
            return True
        found = environments.find(spec, self.options.cache_dir)
        if found is not None:
            self._ready[spec.key] = found
        elif self.options.offline:
            reason = f"no cached environment for {spec.label} (--origin-offline)"
            self._ready[spec.key] = Skipped(reason, _pinned(spec.requirements))
        return spec.key in self._ready

    def missing(self) -> list[tuple[Spec, int]]:
        """Environments still to make, each with how many models need it (offline: none; the
        models that need one are skipped)."""
        specs: dict[str, Spec] = {}
        counts: dict[str, int] = {}
        for need in self._wanted.values():
            if isinstance(need, Spec) and not self._lookup(need):
                specs[need.key] = need
                counts[need.key] = counts.get(need.key, 0) + 1
        return [(spec, counts[key]) for key, spec in specs.items()]

    def create(self, spec: Spec) -> str | None:
        """Make ``spec``'s environment; the reason when it cannot be made (its models skip)."""
        try:
            self._ready[spec.key] = environments.create(spec, self.options.cache_dir)
        except EnvironmentUnavailable as exc:
            self._ready[spec.key] = Skipped(str(exc), _pinned(spec.requirements))
            return str(exc)
        return None

    def choice(self, path: Path) -> Choice:
        """Where ``path``'s origin answers come from (its environment made now, quietly, if it
        was not planned)."""
        self.add(path)
        need = self._wanted[path]
        if not isinstance(need, Spec):
            return need
        if not self._lookup(need):
            self.create(need)
        return self._ready[need.key]


def check(choice: Choice, *, model_path: Path, model: Any, signature: InputSignature,
          probe: Probe, onnx_bytes: bytes, inputs: Sequence[TensorSpec], precision: str,
          tolerance: parity.Tolerance, policy: loading.TrustPolicy) -> OriginRecord:  # fmt: skip
    """The artifact (``onnx_bytes``) against the model as its recorded versions answer."""
    if isinstance(choice, Skipped):
        return OriginRecord("skipped", choice.versions, reason=choice.reason)
    rows: parity.Rows = probe.columns if probe.columns is not None else probe.X
    session = runtime.make_session(onnx_bytes, ["CPUExecutionProvider"])
    outputs = runtime.run(session, probe_feeds(inputs, rows))
    if isinstance(choice, InThisEnvironment):
        expected = parity.reference_answers(model, signature, rows)
        versions, where = choice.versions, None
    else:
        try:
            expected, versions = client.answers(choice, model_path, signature, probe, policy)
        except client.WorkerFailed as exc:
            return OriginRecord("skipped", _ordered(choice.versions), environment=choice.name,
                                reason=str(exc))  # fmt: skip
        where = choice.name
    try:
        report = parity.compare_answers(
            expected, outputs, task=signature.task, classes=signature.classes, rows=probe.rows,
            probe=probe.kind, precision=precision, tolerance=tolerance,
        )  # fmt: skip
    except ValueError as exc:  # answers of another shape (classes, outputs) than the artifact's
        return OriginRecord("failed", _ordered(versions), environment=where, rows=probe.rows,
                            reason=f"the answers differ in shape ({first_line(exc)})")  # fmt: skip
    return OriginRecord(
        "passed" if report.passed else "failed",
        _ordered(versions),
        environment=where,
        rows=report.rows,
        label_agreement=report.label_agreement,
        max_abs_diff=report.max_abs_diff,
        max_rel_diff=report.max_rel_diff,
        ties=report.ties,
        mismatches=report.mismatches,
        reason=report.reason,
    )


def _ordered(versions: dict[str, str]) -> dict[str, str]:
    first = {name: versions[name] for name in _SHOWN if name in versions}
    return {**first, **{k: v for k, v in versions.items() if k not in first}}


def describe(record: OriginRecord) -> str:
    """``scikit-learn 1.3.2 (numpy 1.26.4, scipy 1.11.4, pandas 2.1.4)``: what ran the model."""
    versions = dict(record.versions)
    main = [f"{name} {versions.pop(name)}" for name in ("scikit-learn", "xgboost", "lightgbm")
            if name in versions]  # fmt: skip
    rest = [f"{name} {version}" for name, version in versions.items() if name != "python"]
    head = ", ".join(main) or "the recorded versions"
    return f"{head} ({', '.join(rest)})" if rest else head


def failure(record: OriginRecord, *, required: bool) -> str | None:
    """The reason an origin record fails its model, or ``None`` when it does not."""
    if record.status == "failed":
        return (
            f"origin check failed: the artifact differs from the model as {describe(record)} "
            f"ran it: {record.reason}"
        )
    if record.status == "skipped" and required:
        return f"origin check skipped, and --origin=require: {record.reason}"
    return None
