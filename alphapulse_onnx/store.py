"""The public runtime: ``Store.open(path)`` and the model objects it hands out.

A *store* is the folder ``apo convert`` writes: the ONNX artifacts and ``manifest.json``
(``REGISTRY/onnx`` by default). ``Store`` serves the models it lists.

A model serves from its ONNX artifact with onnxruntime when the artifact exists, its sha256 still
matches the manifest, and it converted and passed validation; otherwise from the source model with
scikit-learn (loaded through the same safe loader as ``apo convert``), saying why in ONE log line on
the ``alphapulse_onnx`` logger. Engines are chosen lazily, once per model, under a lock; the
per-call path does no lookups, hashing or probing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_onnx import input_contract, runtime
from alphapulse_onnx import manifest as manifest_io
from alphapulse_onnx.errors import (
    ApoError,
    InputError,
    ModelLoadError,
    ProviderError,
    TamperError,
    UnknownModelError,
    first_line,
)
from alphapulse_onnx.feeds import FeedBuilder, Screening
from alphapulse_onnx.input_contract import InputContract
from alphapulse_onnx.loading import DEFAULT_POLICY, TrustPolicy
from alphapulse_onnx.manifest import Manifest, ManifestEntry
from alphapulse_onnx.serving import Engine, EngineName, OrtEngine, Outputs, SklearnEngine
from alphapulse_onnx.signature import SCORED_TASKS

# What a detector's or k-means' scores are, for errors that point a caller at scores().
_SCORES_ARE = {"outlier_detection": "its decision_function", "clustering": "its distances"}

logger = logging.getLogger("alphapulse_onnx")


class Model:
    """One model of a store: ``predict``, ``predict_proba`` (or ``scores``) and what it takes and
    gives.

    ``engine`` says what serves it (``"onnxruntime"`` or ``"sklearn"``); choosing it loads the
    artifact (or source) once, on first use.
    """

    def __init__(self, store: Store, entry: ManifestEntry) -> None:
        self._store = store
        self.entry = entry
        self.name = entry.name
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._classes = np.asarray(entry.classes) if entry.classes is not None else None
        self._task = entry.task
        self._proba_ok: bool | None = None  # decided once, then read on every predict_proba

    def __repr__(self) -> str:
        engine = self._engine.name if self._engine else "not loaded"
        return f"<apo Model {self.name!r} ({self._task or '?'}, {engine})>"

    # ------------------------------------------------------------- metadata

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"``, ``"outlier_detection"`` or ``"clustering"``."""
        if self._task is None:
            self.load()
        return self._task

    @property
    def classes(self) -> np.ndarray | None:
        """The labels ``predict`` gives: a classifier's classes in scikit-learn's order
        (``classes_``), ``[-1, 1]`` for outlier detectors, the cluster ids ``0..k-1`` for
        clusterers; ``None`` for regressors."""
        if self._classes is None and self.entry.task is None:
            self.load()
        return self._classes

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return self.load().builder.model_feature_names or self.entry.feature_names

    @property
    def n_features(self) -> int | None:
        return self.load().builder.n_features

    @property
    def has_proba(self) -> bool:
        """Whether it answers ``predict_proba``: classifiers that do, and Gaussian mixtures."""
        engine = self.load()
        if self.task not in ("classification", "clustering"):
            return False
        if isinstance(engine, SklearnEngine):
            try:
                return hasattr(engine.estimator, "predict_proba")
            except Exception:
                return False
        if self.task == "clustering":
            # The manifest records has_proba for classifiers only; a mixture's artifact names its
            # second output after its probabilities, where k-means' gives distances as scores.
            return [output.name for output in self.entry.outputs[1:2]] == ["probabilities"]
        return self.entry.has_proba is not False

    @property
    def engine(self) -> EngineName:
        return self.load().name

    @property
    def provider(self) -> str | None:
        """The onnxruntime execution provider serving it (``None`` under scikit-learn)."""
        return self.load().provider

    @property
    def fallback_reason(self) -> str | None:
        engine = self.load()
        return engine.reason if isinstance(engine, SklearnEngine) else None

    # ------------------------------------------------------------ predicting

    def predict(self, X: Any) -> np.ndarray:
        """Labels (in the original class values) or regression values, as scikit-learn gives."""
        engine = self._engine or self.load()
        prepared = engine.prepare(X)
        if engine.rows(prepared) == 0:
            return self._empty(proba=False)
        return engine.predict(prepared)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_rows, n_classes), float64."""
        engine = self._engine or self.load()
        self.require_proba()
        prepared = engine.prepare(X)
        if engine.rows(prepared) == 0:
            return self._empty(proba=True)
        return engine.predict_proba(prepared)

    def scores(self, X: Any) -> np.ndarray:
        """The scores behind the labels of an outlier detector or a clusterer, float64.

        Outlier detectors: ``decision_function``, shape (n_rows,), negative for outliers.
        k-means: ``transform``, the distance to each centre, shape (n_rows, n_clusters).
        Gaussian mixtures: each component's probability (``predict_proba``).
        """
        engine = self._engine or self.load()
        self._require_scores()
        prepared = engine.prepare(X)
        if engine.rows(prepared) == 0:
            return self._empty_scores()
        return engine.scores(prepared)

    async def predict_async(self, X: Any) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store.executor, self.predict, X)

    async def predict_proba_async(self, X: Any) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._store.executor, self.predict_proba, X)

    # ---------------------------------------------- for apo predict and batching

    def prepare(self, X: Any) -> Any:
        """Validate ``X`` and convert it for the engine (raises ``InvalidInputError``)."""
        return (self._engine or self.load()).prepare(X)

    def rows(self, prepared: Any) -> int:
        """How many rows ``prepare`` made of a caller's input."""
        return self.load().rows(prepared)

    def concat(self, parts: Sequence[Any]) -> Any:
        """Several callers' prepared rows as one batch, in order."""
        return self.load().concat(parts)

    def source_rows(self, X: Any) -> Any:
        """``X`` as the source estimator takes it (a DataFrame when it was fit on one)."""
        return self.load().builder.frame(X)

    def screen(self, X: Any) -> Screening:
        """Which rows of ``X`` this model cannot take (cells that are not numbers, values its
        input contract refuses), without raising for them; ``prepare`` raises for the first."""
        return (self._engine or self.load()).builder.screen(X)

    @property
    def input_contract(self) -> InputContract | None:
        """What it takes besides ordinary numbers (NaN, infinities, magnitudes), as served."""
        return self.load().builder.contract

    def run_prepared(self, prepared: Any, *, proba: bool) -> Outputs:
        """Labels or values, probabilities when asked, and the scores of scored tasks."""
        engine = self._engine or self.load()
        if proba:
            self.require_proba()
        if engine.rows(prepared) == 0:
            scores = self._empty_scores() if self.task in SCORED_TASKS else None
            return Outputs(self._empty(proba=False), self._empty(proba=True) if proba else None,
                           scores)  # fmt: skip
        return engine.run(prepared, proba=proba)

    def run_screened(self, prepared: Any, *, proba: bool) -> tuple[Outputs, np.ndarray]:
        """``run_prepared``, but rows whose answer the artifact cannot compute (its arithmetic
        overflows) are flagged, one bool per row, instead of raising for the first."""
        engine = self._engine or self.load()
        if proba:
            self.require_proba()
        if engine.rows(prepared) == 0:
            return self.run_prepared(prepared, proba=proba), np.zeros(0, dtype=bool)
        return engine.run_screened(prepared, proba=proba)

    def require_proba(self) -> None:
        """Raise ``InputError`` unless this model gives class probabilities."""
        if self._proba_ok:
            return
        task = self.task
        if task == "regression":
            raise InputError(f"model {self.name!r} is a regressor: it has no predict_proba")
        if not self.has_proba:
            if task in _SCORES_ARE:
                raise InputError(
                    f"model {self.name!r} ({task.replace('_', ' ')}) has no predict_proba",
                    hint=f"use predict() for its labels and scores() for {_SCORES_ARE[task]}",
                )
            raise InputError(
                f"model {self.name!r} has no predict_proba (its estimator only decides)",
                hint="use predict(), or retrain with probability estimates",
            )
        self._proba_ok = True

    def _require_scores(self) -> None:
        task = self.task
        if task not in SCORED_TASKS:
            instead = "predict_proba() or predict()" if task == "classification" else "predict()"
            raise InputError(
                f"model {self.name!r} ({task}) has no scores: only outlier detectors and "
                "clusterers give them",
                hint=f"use {instead}",
            )

    def _empty(self, *, proba: bool) -> np.ndarray:
        if proba:
            return np.empty((0, len(self._classes) if self._classes is not None else 0))
        if self._classes is not None:
            return np.empty(0, dtype=self._classes.dtype)
        return np.empty(0, dtype=np.float64)

    def _empty_scores(self) -> np.ndarray:
        if self.task == "outlier_detection":
            return np.empty(0, dtype=np.float64)
        return self._empty(proba=True)  # one column per cluster

    # --------------------------------------------------------- engine choice

    @property
    def loaded(self) -> bool:
        """Whether the engine is chosen (and its session or source model loaded)."""
        return self._engine is not None

    def load(self) -> Engine:
        """Choose the engine and load it, once (it blocks: async callers use an executor)."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                self._engine = self._choose_engine()
            return self._engine

    def _choose_engine(self) -> Engine:
        entry = self.entry
        reason, data = self._onnx_blocker()
        if data is not None:
            contract = entry.input_contract or input_contract.legacy(
                entry.artifact.precision if entry.artifact else None
            )
            builder = FeedBuilder(entry.inputs, entry.feature_names, model=self.name,
                                  contract=contract)  # fmt: skip
            try:
                session = self._store.session_for(self.name, data, entry)
            except Exception as exc:
                reason = f"onnxruntime cannot load the artifact ({first_line(exc)})"
            else:
                return OrtEngine(session, builder, entry, self._classes)
        assert reason is not None
        return self._sklearn_engine(reason)

    def _onnx_blocker(self) -> tuple[str | None, bytes | None]:
        """Why the artifact cannot serve, or its verified bytes."""
        entry = self.entry
        if not entry.ok:
            detail = first_line(entry.error) if entry.error else "unknown error"
            return f"its conversion failed at {entry.stage or '?'} ({detail})", None
        if entry.artifact is None:
            return "the manifest lists no artifact for it", None
        if entry.validation is None or not entry.validation.passed:
            return "its artifact did not pass validation", None
        if not runtime.is_available():
            return "onnxruntime is not installed", None
        if not self._store.providers:
            return "no onnxruntime execution provider runs here", None
        files = manifest_io.verify(entry, self._store.manifest_dir)
        if not files.intact:
            return f"its {files.problems[0]}", None
        return None, files.artifact_bytes

    def _sklearn_engine(self, reason: str) -> SklearnEngine:
        from alphapulse_onnx import loading

        entry = self.entry
        source = self._store.root / entry.source.path
        if not source.is_file():
            raise ModelLoadError(
                f"model {self.name!r} cannot be served: {reason}, and its source model is missing",
                path=source,
                hint="restore the file or rerun `apo convert`",
            )
        # Only the model that was converted is served: a replaced source is not.
        if not entry.source.sha256:
            raise TamperError(
                f"model {self.name!r} cannot be served: {reason}, and the manifest records no "
                "sha256 for its source model to check it against",
                path=source,
                hint="rerun `apo convert`",
            )
        checked = manifest_io.verify(replace(entry, artifact=None), self._store.manifest_dir,
                                     self._store.root)  # fmt: skip
        if not checked.intact:
            # Only the file that was converted and checked is served, never a replacement.
            raise TamperError(
                f"model {self.name!r} cannot be served: {reason}, and its source model "
                f"{entry.source.path} is not the one converted (it, or a file saved with it, "
                "differs from the sha256 in the manifest)",
                path=self._store.manifest_path,
                hint="restore the converted file, or rerun `apo convert`",
            )
        loaded = loading.load(source, loading.selecting(self._store.policy, entry.source.selected))
        estimator = loaded.estimator
        inputs, names = entry.inputs, entry.feature_names
        if not inputs:  # a model that failed before its signature was recorded
            from alphapulse_onnx.signature import infer

            signature = infer(estimator, dtype="float64")
            inputs, names = signature.inputs, signature.feature_names
            self._task = signature.task
            if signature.task == "classification":
                self._classes = np.asarray(estimator.classes_)  # keeps the labels' own dtype
            elif signature.classes is not None:
                self._classes = np.asarray(signature.classes)  # outlier labels or cluster ids
        elif self._task is None:
            from alphapulse_onnx.signature import task_of

            self._task = task_of(estimator)
        inputs = tuple(replace(s, dtype="float64") if s.dtype == "float32" else s for s in inputs)
        # scikit-learn's own contract, not the one recorded for the artifact: that one also
        # refuses what a float32 artifact cannot hold, which scikit-learn answers.
        contract = _contract_of(estimator)
        builder = FeedBuilder(inputs, names, model=self.name, contract=contract)
        logger.warning("model %r: serving with scikit-learn because %s", self.name, reason)
        return SklearnEngine(estimator, builder, reason, self._task)


def _contract_of(estimator: Any) -> InputContract:
    """scikit-learn's own input contract for a model the manifest records none for."""
    from alphapulse_onnx import column_probes, probing
    from alphapulse_onnx.signature import infer

    signature = infer(estimator, dtype="float64")
    if signature.per_column:
        probe = column_probes.generate_columns(estimator, signature, rows=64)
    else:
        probe = probing.generate(estimator, signature.n_features, rows=64)
    return input_contract.determine(estimator, signature, probe)


class Store:
    """A store of converted models: ``Store.open("models/onnx")["reversal_rf"].predict(X)``."""

    def __init__(
        self,
        manifest: Manifest,
        manifest_path: Path,
        *,
        providers: Sequence[str] | None = None,
        settings: runtime.SessionSettings | None = None,
        policy: TrustPolicy = DEFAULT_POLICY,
        executor: Executor | None = None,
    ) -> None:
        self.manifest = manifest
        self.manifest_path = manifest_path
        self.manifest_dir = manifest_path.parent
        self.root = manifest_io.registry_dir(manifest_path, manifest)
        self.policy = policy
        self.settings = settings
        self.executor = executor
        self.providers: tuple[str, ...] = ()
        if runtime.is_available():
            self.providers = tuple(runtime.runnable_providers(providers))
            if providers and not self.providers:
                report = runtime.probe_all()
                wanted = ", ".join(runtime.provider_name(p) for p in providers)
                reasons = "; ".join(
                    f"{p.name}: {p.reason}"
                    for p in report.providers
                    if p.name in [runtime.provider_name(w) for w in providers] and p.reason
                )
                raise ProviderError(
                    f"{wanted} does not run here" + (f" ({reasons})" if reasons else ""),
                    hint="run `apo providers` to see what runs",
                )
        elif providers:
            raise ProviderError("onnxruntime is not installed", hint="pip install onnxruntime")
        self._models: dict[str, Model] = {}
        self._entries = {e.name: e for e in manifest.models}
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, tuple[str, ...]], Any] = {}

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        settings: runtime.SessionSettings | None = None,
        policy: TrustPolicy = DEFAULT_POLICY,
        executor: Executor | None = None,
    ) -> Store:
        """A folder holding ``manifest.json``, or the manifest file itself.

        ``providers`` (e.g. ``["cuda"]``) restricts onnxruntime to those; by default the best that
        really run here, CUDA then CPU. ``settings`` overrides the tuned session settings that
        ``apo bench`` records per model. ``executor`` runs the ``*_async`` calls (default: the
        event loop's).
        """
        manifest_path = manifest_io.resolve_path(Path(path))
        manifest = manifest_io.read(manifest_path)
        return cls(
            manifest,
            manifest_path,
            providers=providers,
            settings=settings,
            policy=policy,
            executor=executor,
        )

    # ---------------------------------------------------------- mapping API

    @property
    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> Model:
        model = self._models.get(name)
        if model is not None:
            return model
        entry = self._entry(name)
        with self._lock:
            model = self._models.get(entry.name)
            if model is None:
                model = self._models[entry.name] = Model(self, entry)
            self._models[name] = model  # also under the alias it was asked by (a source path)
            return model

    def __repr__(self) -> str:
        return f"<apo Store {self.manifest_path} ({len(self)} models)>"

    def _entry(self, name: str) -> ManifestEntry:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        try:
            return self.manifest.entry(name)  # also by source path, e.g. regime/breakout_mlp.pkl
        except UnknownModelError as exc:  # a name that matches several models
            raise UnknownModelError(exc.message, path=self.manifest_path, hint=exc.hint) from None
        except KeyError:
            names = ", ".join(list(self._entries)[:10])
            raise UnknownModelError(
                f"no model named {name!r} (models: {names or 'none'})", path=self.manifest_path
            ) from None

    # ----------------------------------------------------------- shortcuts

    def predict(self, name: str, X: Any) -> np.ndarray:
        return self[name].predict(X)

    def predict_proba(self, name: str, X: Any) -> np.ndarray:
        return self[name].predict_proba(X)

    def scores(self, name: str, X: Any) -> np.ndarray:
        return self[name].scores(X)

    async def predict_async(self, name: str, X: Any) -> np.ndarray:
        """``predict`` in the executor: onnxruntime releases the GIL, the event loop keeps going."""
        return await self[name].predict_async(X)

    async def predict_proba_async(self, name: str, X: Any) -> np.ndarray:
        return await self[name].predict_proba_async(X)

    # ------------------------------------------------------------- sessions

    def session_for(self, name: str, data: bytes, entry: ManifestEntry) -> Any:
        """One onnxruntime session per (model, providers), created once."""
        key = (name, self.providers)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                settings = self.settings or entry.session_settings
                session = runtime.make_session(data, list(self.providers), settings)
                self._sessions[key] = session
            return session


# The name of ``Store`` before 0.2: code written against it keeps working.
Registry = Store

__all__ = ["ApoError", "Model", "Outputs", "Registry", "Store"]
