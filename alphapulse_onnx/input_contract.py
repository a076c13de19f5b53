"""What a model takes besides ordinary numbers: missing values, infinities, huge magnitudes.

scikit-learn decides this per model, and per column where a ColumnTransformer routes columns to
different steps: a forest (since 1.4), HistGradientBoosting and an imputing pipeline accept NaN, a
logistic regression refuses it, trees refuse values beyond float32 range because they compute in
float32. Tags (``__sklearn_tags__().input_tags.allow_nan``) do not say it for pipelines, so apo
asks scikit-learn itself: ``determine`` puts NaN, +-inf and +-1e300 into a row it answers and sees
whether it still answers. Then the artifact has to prove it gives scikit-learn's answers on probe
rows holding those values (``hostile_probes``; ``checking.prove_contract``); what it cannot prove is
refused too. A float32 artifact also refuses values beyond float32 range, which it cannot hold.

The contract is recorded per model in the manifest (``input_contract``) and every engine applies it
to every row (``feeds.FeedBuilder``): a refused cell is an ``InvalidInputError`` naming its row and
column, whichever engine serves the model, never an answer that is not scikit-learn's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from alphapulse_onnx.probing import Probe
    from alphapulse_onnx.signature import InputSignature

FLOAT32_MAX = float(np.finfo(np.float32).max)
Kind = Literal["nan", "inf", "big"]
KINDS: tuple[Kind, ...] = ("nan", "inf", "big")
HUGE = 1e300  # a finite float64 far beyond float32 range
# Limits tried, largest first, when scikit-learn refuses HUGE (trees refuse beyond float32 range).
_LADDER = (FLOAT32_MAX, 1e30, 1e20, 1e10, 1e6)
HOSTILE_ROWS = 256  # probe rows per kind of value a model accepts

WHAT: dict[str, str] = {"nan": "missing values (NaN)", "inf": "infinite values",
                        "big": "values this large"}  # fmt: skip
SKLEARN_REFUSES = {
    "nan": "scikit-learn refuses missing values for this model",
    "inf": "scikit-learn refuses infinite values for this model",
}
FLOAT32_ARTIFACT = "the largest its float32 artifact can hold"
FLOAT32_SKLEARN = "scikit-learn computes this model in float32 and refuses larger values"
LEGACY = (
    "its manifest entry records no input contract (converted by an older apo); rerun `apo convert`"
)


@dataclass(frozen=True)
class Rule:
    """What one column takes: NaN, +-inf, and finite values up to ``max_abs`` (None: any)."""

    nan: bool = False
    inf: bool = False
    max_abs: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"nan": self.nan, "inf": self.inf, "max_abs": self.max_abs}

    @classmethod
    def from_json(cls, raw: Any) -> Rule:
        if not isinstance(raw, Mapping):
            raise ValueError("a column rule is not an object")
        limit = raw.get("max_abs")
        return cls(nan=bool(raw.get("nan", False)), inf=bool(raw.get("inf", False)),
                   max_abs=None if limit is None else float(limit))  # fmt: skip

    def allows(self, kind: Kind) -> bool:
        if kind == "big":
            return self.max_abs is None or self.max_abs >= HUGE
        return self.nan if kind == "nan" else self.inf

    def limited(self, limit: float) -> Rule:
        if self.max_abs is not None and self.max_abs <= limit:
            return self
        return replace(self, max_abs=limit)


@dataclass(frozen=True)
class InputContract:
    """Rules for every column (``default``), overridden by column label where one differs.

    A label is the column's name, or its 0-based position as text for a model fit without names.
    ``reasons`` says, per kind refused or limited (``nan``, ``inf``, ``max_abs``), why: the words
    of the error a refused cell gets. ``proven`` counts the probe rows holding each kind of value
    that the artifact answered as scikit-learn did.
    """

    default: Rule
    columns: Mapping[str, Rule] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)
    proven: Mapping[str, int] = field(default_factory=dict)

    def rule(self, label: str) -> Rule:
        return self.columns.get(label, self.default)

    def rules(self, labels: Sequence[str]) -> tuple[Rule, ...]:
        return tuple(self.rule(label) for label in labels)

    def accepts(self, kind: Kind) -> bool:
        """Whether any column takes ``kind``."""
        return self.default.allows(kind) or any(r.allows(kind) for r in self.columns.values())

    def reason(self, kind: str) -> str:
        key = "max_abs" if kind == "big" else kind
        return self.reasons.get(key) or SKLEARN_REFUSES.get(key, "")

    def refusing(self, kind: Kind, reason: str) -> InputContract:
        """This contract with ``kind`` refused in every column, for ``reason``."""

        def narrowed(rule: Rule) -> Rule:
            if kind == "big":
                return rule.limited(FLOAT32_MAX)
            return replace(rule, **{kind: False})

        key = "max_abs" if kind == "big" else kind
        return InputContract(narrowed(self.default),
                             {k: narrowed(r) for k, r in self.columns.items()},
                             {**self.reasons, key: reason},
                             {k: v for k, v in self.proven.items() if k != kind})  # fmt: skip

    def limited(self, limit: float, reason: str) -> InputContract:
        """Finite values beyond ``limit`` refused everywhere (a float32 artifact's range)."""
        rules = [self.default, *self.columns.values()]
        if all(r.max_abs is not None and r.max_abs <= limit for r in rules):
            return self
        return InputContract(self.default.limited(limit),
                             {k: r.limited(limit) for k, r in self.columns.items()},
                             {**self.reasons, "max_abs": reason}, self.proven)  # fmt: skip

    def with_proven(self, kind: Kind, rows: int) -> InputContract:
        return replace(self, proven={**self.proven, kind: rows})

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = self.default.to_json()
        raw["columns"] = {label: rule.to_json() for label, rule in self.columns.items()}
        raw["reasons"] = dict(self.reasons)
        raw["proven"] = dict(self.proven)
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> InputContract:
        if not isinstance(raw, Mapping):
            raise ValueError("input_contract is not an object")
        columns = raw.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise ValueError("input_contract.columns is not an object")
        return cls(
            default=Rule.from_json(raw),
            columns={str(k): Rule.from_json(v) for k, v in columns.items()},
            reasons={str(k): str(v) for k, v in dict(raw.get("reasons") or {}).items()},
            proven={str(k): int(v) for k, v in dict(raw.get("proven") or {}).items()},
        )


def legacy(precision: str | None) -> InputContract:
    """For an entry converted before contracts were recorded: no NaN, no inf, float32 range for
    a float32 artifact (its tree converter did not route missing values as scikit-learn does)."""
    limit = FLOAT32_MAX if precision in (None, "float32") else None
    reasons = {"nan": LEGACY, "inf": LEGACY}
    if limit is not None:
        reasons["max_abs"] = FLOAT32_ARTIFACT
    return InputContract(Rule(max_abs=limit), reasons=reasons)


def served(contract: InputContract, precision: str | None) -> InputContract:
    """The contract an artifact of ``precision`` serves: float32 holds nothing beyond its range."""
    if precision == "float32":
        return contract.limited(FLOAT32_MAX, FLOAT32_ARTIFACT)
    return contract


# ----------------------------------------------------------------------- asking scikit-learn


Rows = Any  # a float matrix, or cells by column (see parity.Rows)


def column_labels(signature: InputSignature) -> list[str]:
    """Column labels in feature order: names, else positions."""
    if signature.per_column:
        return [spec.column_name for spec in signature.inputs]
    if signature.feature_names is not None:
        return list(signature.feature_names)
    return [str(j) for j in range(signature.n_features)]


def _kinds_of_columns(signature: InputSignature) -> dict[str, str]:
    """Each column's type: float, string or int64 (only per-column models have the last two)."""
    if signature.per_column:
        return {spec.column_name: ("float" if spec.dtype in ("float32", "float64") else spec.dtype)
                for spec in signature.inputs}  # fmt: skip
    return dict.fromkeys(column_labels(signature), "float")


def _answers(model: Any, signature: InputSignature, rows: Rows) -> bool:
    """Whether scikit-learn answers ``rows`` (predict, probabilities, scores) without raising."""
    from alphapulse_onnx.parity import reference_answers

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            reference_answers(model, signature, rows)
    except Exception:  # whatever scikit-learn (or a step of the pipeline) raises: refused
        return False
    return True


def _take(rows: Rows, index: Sequence[int] | np.ndarray) -> Rows:
    if isinstance(rows, np.ndarray):
        return np.array(rows[np.asarray(index)], copy=True)
    return {k: np.array(np.asarray(v)[np.asarray(index)], copy=True) for k, v in rows.items()}


def _n_rows(rows: Rows) -> int:
    if isinstance(rows, np.ndarray):
        return int(rows.shape[0])
    return len(next(iter(rows.values()), ()))


def _ordinary(rows: Rows, signature: InputSignature) -> np.ndarray:
    """Rows with no missing or non-finite cell: the ones hostile values are put into."""
    if isinstance(rows, np.ndarray):
        return np.asarray(np.isfinite(rows).all(axis=1)) if rows.size else np.ones(len(rows), bool)
    ok = np.ones(_n_rows(rows), dtype=bool)
    kinds = _kinds_of_columns(signature)
    for label, values in rows.items():
        kind = kinds.get(label, "float")
        if kind == "float":
            ok &= np.isfinite(np.asarray(values, dtype=np.float64))
        elif kind == "string":
            ok &= np.array([isinstance(v, str) for v in values], dtype=bool)
    return ok


def _probe_rows(probe: Probe) -> Rows:
    return probe.columns if probe.columns is not None else probe.X


def _set(rows: Rows, labels: Sequence[str], column: str, value: Any) -> None:
    """Write ``value`` into every row of ``column`` of ``rows`` (in place)."""
    if isinstance(rows, np.ndarray):
        rows[:, labels.index(column)] = value
    else:
        rows[column][:] = value


def _with(rows: Rows, labels: Sequence[str], kinds: Mapping[str, str], columns: Sequence[str],
          value: float) -> Rows:  # fmt: skip
    """A copy of ``rows`` with ``value`` (NaN for text columns) in each of ``columns``."""
    out = _take(rows, range(_n_rows(rows)))
    if not isinstance(out, np.ndarray):
        for label in columns:
            if kinds.get(label) == "string":
                out[label] = np.asarray(out[label], dtype=object)
    for label in columns:
        cell: Any = np.nan if kinds.get(label) == "string" else value
        _set(out, labels, label, cell)
    return out


def _base_rows(model: Any, signature: InputSignature, probe: Probe, limit: int = 16) -> Rows | None:
    """One probe row with ordinary values that scikit-learn answers."""
    rows = _probe_rows(probe)
    candidates = np.flatnonzero(_ordinary(rows, signature))
    if candidates.size > limit:
        candidates = candidates[np.linspace(0, candidates.size - 1, limit).astype(int)]
    for i in candidates:
        one = _take(rows, [int(i)])
        if _answers(model, signature, one):
            return one
    return None


def _accepted(columns: list[str], trial: Callable[[list[str]], bool], split: bool) -> list[str]:
    """The columns whose trial passes: all at once, else (``split``) halves, recursively."""
    if not columns:
        return []
    if trial(columns):
        return columns
    if not split or len(columns) == 1:
        return []
    middle = len(columns) // 2
    return _accepted(columns[:middle], trial, split) + _accepted(columns[middle:], trial, split)


def determine(model: Any, signature: InputSignature, probe: Probe) -> InputContract:
    """scikit-learn's own contract for ``model``: a row it answers, with NaN, +-inf and +-1e300
    put into its columns (all at once; one by one, halving, where a ColumnTransformer routes
    columns to different steps)."""
    from alphapulse_onnx.signature import has_column_transformer

    labels = column_labels(signature)
    kinds = _kinds_of_columns(signature)
    base = _base_rows(model, signature, probe)
    if base is None:
        reason = "scikit-learn answered none of the probe rows, so apo cannot tell"
        return InputContract(Rule(), reasons={"nan": reason, "inf": reason})
    # Columns are tried apart where a model may treat them differently: a ColumnTransformer's
    # routes, or per-column models whose encoders take missing text that the estimator after
    # them would refuse as a missing number. Text and numbers are always tried apart.
    split = has_column_transformer(model) or signature.per_column
    floats = [label for label in labels if kinds[label] == "float"]
    texts = [label for label in labels if kinds[label] == "string"]

    def trial(values: Sequence[float]) -> Callable[[list[str]], bool]:
        return lambda columns: all(
            _answers(model, signature, _with(base, labels, kinds, columns, v)) for v in values
        )

    nan = set(_accepted(floats, trial([np.nan]), split) + _accepted(texts, trial([np.nan]), split))
    inf = set(_accepted(floats, trial([np.inf, -np.inf]), split))
    limit: float | None = None
    reasons: dict[str, str] = {}
    if floats and not trial([HUGE, -HUGE])(floats):
        limit = next((v for v in _LADDER if trial([v, -v])(floats)), None)
        if limit is not None:
            reasons["max_abs"] = FLOAT32_SKLEARN if limit == FLOAT32_MAX else (
                f"scikit-learn refuses values beyond {limit:g} for this model")  # fmt: skip
    if not nan or len(nan) < len(floats) + len(texts):
        reasons["nan"] = SKLEARN_REFUSES["nan"]
    if not inf or len(inf) < len(floats):
        reasons["inf"] = SKLEARN_REFUSES["inf"]
    rules = {label: Rule(nan=label in nan, inf=label in inf, max_abs=limit) for label in labels}
    return _compact(rules, reasons)


def _compact(rules: Mapping[str, Rule], reasons: dict[str, str]) -> InputContract:
    """The most common rule as the default, the others by label."""
    counts: dict[Rule, int] = {}
    for rule in rules.values():
        counts[rule] = counts.get(rule, 0) + 1
    default = max(counts, key=lambda r: counts[r]) if counts else Rule()
    return InputContract(default, {k: r for k, r in rules.items() if r != default}, reasons)


# ----------------------------------------------------------------------- probes that prove it


def hostile_probes(contract: InputContract, signature: InputSignature, probe: Probe, *,
                   rows: int = HOSTILE_ROWS, seed: int = 0) -> dict[Kind, Rows]:  # fmt: skip
    """Per kind of value the contract accepts somewhere: probe rows with such values in the
    columns that accept them (a few cells per row, and one row with every such column)."""
    rng = np.random.default_rng(seed)
    source = _probe_rows(probe)
    ordinary = np.flatnonzero(_ordinary(source, signature))
    if ordinary.size == 0:
        return {}
    labels = column_labels(signature)
    kinds = _kinds_of_columns(signature)
    picked = rng.choice(ordinary, min(rows, ordinary.size), replace=False)
    out: dict[Kind, Rows] = {}
    for kind in KINDS:
        columns = [
            label
            for label in labels
            if contract.rule(label).allows(kind)
            and (kinds[label] == "float" or (kind == "nan" and kinds[label] == "string"))
        ]
        if not columns:
            continue
        base = _take(source, picked)
        every = _take(source, picked[:1])
        if not isinstance(base, np.ndarray):
            for label in columns:
                if kinds[label] == "string":
                    base[label] = np.asarray(base[label], dtype=object)
                    every[label] = np.asarray(every[label], dtype=object)
        n = _n_rows(base)
        per_row = max(1, len(columns) // 3)
        for i in range(n):
            chosen = rng.choice(len(columns), rng.integers(1, per_row + 1), replace=False)
            for c in chosen:
                label = columns[int(c)]
                _put(base, i, labels, label, _value(kind, kinds[label], rng))
        for label in columns:
            _put(every, 0, labels, label, _value(kind, kinds[label], rng))
        out[kind] = _stack(base, every)
    return out


def _value(kind: Kind, column_kind: str, rng: np.random.Generator) -> Any:
    if kind == "nan":
        return np.nan
    sign = float(rng.choice([-1.0, 1.0]))
    if kind == "inf":
        return sign * np.inf
    return sign * float(10.0 ** rng.uniform(39, 300))


def _put(rows: Rows, i: int, labels: Sequence[str], label: str, value: Any) -> None:
    if isinstance(rows, np.ndarray):
        rows[i, labels.index(label)] = value
    else:
        rows[label][i] = value


def _stack(first: Rows, second: Rows) -> Rows:
    if isinstance(first, np.ndarray):
        return np.vstack([first, second])
    return {k: np.concatenate([np.asarray(first[k]), np.asarray(second[k])]) for k in first}


__all__ = [
    "FLOAT32_MAX",
    "KINDS",
    "InputContract",
    "Rule",
    "column_labels",
    "determine",
    "hostile_probes",
    "legacy",
    "served",
]
