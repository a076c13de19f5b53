"""User rows -> onnxruntime feeds (and scikit-learn inputs) for one manifest entry.

Everything is driven by the entry's ``inputs`` and ``feature_names``: the classic artifact takes one
float tensor ``X`` of ``n_features`` columns; DataFrame pipelines take one ``[None, 1]`` input per
original column, typed ``string``, ``int64``, ``float32`` or ``float64``. Inputs consume the
feature columns in order, each as many as its width. Callers name columns as they named them when
fitting; the ONNX input each one feeds may carry a sanitised name (``TensorSpec.column``).

Rows may be a numpy array or a list of rows (matched by position), a pandas DataFrame, a mapping of
column -> values or a list of mappings (matched by name, in any order). Bad rows raise
``InvalidInputError`` (an ``ApoError`` and a ``ValueError``) naming the row and column, never a raw
onnxruntime error. Rows and positional columns count from 0 here; ``apo predict`` restates them
in the file's terms.

Given the model's ``InputContract``, every engine's rows are held to it: a missing value (NaN), an
infinity or a magnitude the model does not take is refused by row and column, as scikit-learn
would refuse it, or because the artifact cannot give scikit-learn's answer for it (see
``input_contract``). ``screen`` finds every such row at once, for callers that skip or mark them.

``probe_feeds`` builds the feeds for rows apo draws or reads itself for a parity check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphapulse_onnx.errors import InvalidInputError, quoted
from alphapulse_onnx.input_contract import InputContract, Rule
from alphapulse_onnx.signature import TensorSpec

# What a missing value (None, NaN, pd.NA) in a text column becomes in an onnxruntime string tensor.
STRING_MISSING = ""

_NP_DTYPES: dict[str, Any] = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


@dataclass(frozen=True)
class Screening:
    """Which rows of a caller's input the model cannot take (``bad``, one flag per row), and the
    error the first of them gets."""

    bad: np.ndarray
    first: InvalidInputError | None

    @property
    def count(self) -> int:
        return int(self.bad.sum())


@dataclass(frozen=True)
class _Slot:
    """One artifact input: which feature columns it takes, and as what type."""

    name: str
    dtype: str  # float32 | float64 | int64 | string
    start: int
    width: int


def _width(spec: TensorSpec) -> int | None:
    if len(spec.shape) < 2:
        return 1
    dim = spec.shape[1]
    return int(dim) if isinstance(dim, int) else None


def _is_frame(X: Any) -> bool:
    return type(X).__module__.startswith("pandas") and hasattr(X, "columns")


def _is_series(X: Any) -> bool:
    return type(X).__module__.startswith("pandas") and type(X).__name__ == "Series"


class FeedBuilder:
    """Validates rows once and turns them into feeds; all per-entry lookups are done up front."""

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        feature_names: Sequence[str] | None,
        *,
        model: str = "",
        contract: InputContract | None = None,
    ) -> None:
        if not inputs:
            raise ValueError(f"model {model!r}: the manifest lists no inputs")
        self.model = model
        slots: list[_Slot] = []
        start = 0
        for spec in inputs:
            width = _width(spec)
            if width is None:
                if len(inputs) > 1:
                    raise ValueError(f"model {model!r}: input {spec.name!r} has no fixed width")
                width = len(feature_names) if feature_names else -1
            slots.append(_Slot(spec.name, spec.dtype, start, width))
            start += max(width, 0)
        self.slots = tuple(slots)
        self.n_features: int | None = None if slots[0].width < 0 else start
        names = tuple(str(n) for n in feature_names) if feature_names is not None else None
        if names is not None and self.n_features is not None and len(names) != self.n_features:
            names = None  # inconsistent manifest: match by position only
        if names is None and len(slots) > 1 and all(s.width == 1 for s in slots):
            names = tuple(spec.column_name for spec in inputs)  # per-column: the user's columns
        self.names = names
        self.model_feature_names = tuple(feature_names) if feature_names is not None else None
        self._name_index = {n: i for i, n in enumerate(names)} if names else {}
        self.single = len(slots) == 1 and slots[0].dtype in ("float32", "float64")
        self._single_name = slots[0].name
        self._single_dtype = _NP_DTYPES.get(slots[0].dtype, np.float32)
        self.contract = contract
        self._rules: tuple[Rule, ...] = ()
        self._checks = contract is not None
        if contract is not None and self.n_features is not None:
            labels = self.names or tuple(str(j) for j in range(self.n_features))
            self._rules = contract.rules(labels)
            self._allow_nan = np.array([r.nan for r in self._rules], dtype=bool)
            self._allow_inf = np.array([r.inf for r in self._rules], dtype=bool)
            self._max_abs = np.array([np.inf if r.max_abs is None else r.max_abs
                                      for r in self._rules], dtype=np.float64)  # fmt: skip
            self._limited = bool(np.isfinite(self._max_abs).any())
            self._checks = not (self._allow_nan.all() and self._allow_inf.all()
                                and not self._limited)  # fmt: skip

    # ------------------------------------------------------------------ public

    def feeds(self, X: Any) -> dict[str, np.ndarray]:
        """The onnxruntime feeds for ``X``, in the artifact's dtypes, C-contiguous."""
        if self.single:
            # The hot path: a 2-D numeric array of the right width goes straight through.
            if type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind in "fiub":
                if X.shape[1] != self.n_features and self.n_features is not None:
                    raise self._count_error(X.shape[1])
                if self._checks and X.dtype.kind == "f":
                    self._check_cells(X)
                return {self._single_name: _cast(X, self._single_dtype)}
            return {self._single_name: self._matrix(X, self._single_dtype)}
        columns = self._columns(X, for_sklearn=False)
        feeds = {}
        for slot in self.slots:
            block = np.stack(columns[slot.start : slot.start + slot.width], axis=1)
            feeds[slot.name] = np.ascontiguousarray(block)
        return feeds

    def frame(self, X: Any) -> Any:
        """What scikit-learn takes: float64 rows, or a DataFrame when the model knows names."""
        if self.single:
            matrix = self._matrix(X, np.float64)
            if self.model_feature_names is None:
                return matrix
            import pandas as pd

            return pd.DataFrame(matrix, columns=list(self.model_feature_names), copy=False)
        import pandas as pd

        columns = self._columns(X, for_sklearn=True)
        names: Sequence[Any] = self.model_feature_names or self.names or range(len(columns))
        return pd.DataFrame(dict(zip(names, columns, strict=True)))

    # ---------------------------------------------------------------- shaping

    def _count_error(self, got: int) -> InvalidInputError:
        names = ""
        if self.names:
            more = ", ..." if len(self.names) > 4 else ""
            names = f" ({', '.join(self.names[:4])}{more})"
        return InvalidInputError(
            f"model {self.model!r} takes {self.n_features} features per row{names}, got {got}",
            detail=f"{got} columns where the model takes {self.n_features}",
        )

    def _not_2d(self, what: str) -> InvalidInputError:
        return InvalidInputError(
            f"model {self.model!r} takes 2-D rows (n_rows, n_features); got {what}",
            hint="wrap one row as [row] or use X.reshape(1, -1)",
        )

    def _normalise(self, X: Any) -> Any:
        """A DataFrame, or a 2-D ndarray; lists and mappings are turned into one of these."""
        if X is None:
            raise self._not_2d("None")
        if isinstance(X, np.ndarray) or _is_frame(X):
            pass
        elif _is_series(X):
            raise self._not_2d(f"a 1-D Series of {len(X)} values")
        elif isinstance(X, Mapping):
            import pandas as pd

            try:
                X = pd.DataFrame({str(k): v for k, v in X.items()})
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(f"cannot read the columns as a table: {exc}") from None
        elif hasattr(X, "tocsr") or hasattr(X, "toarray"):
            raise InvalidInputError(
                f"model {self.model!r}: sparse input is not supported", hint="pass X.toarray()"
            )
        elif isinstance(X, Sequence) and not isinstance(X, (str, bytes)):
            if len(X) and all(isinstance(r, Mapping) for r in X):
                import pandas as pd

                X = pd.DataFrame.from_records(list(X))
            else:
                X = self._list_to_array(X)
        else:
            raise InvalidInputError(
                f"model {self.model!r}: cannot use a {type(X).__name__} as rows",
                hint="pass a numpy array, a list of rows or a pandas DataFrame",
            )
        if isinstance(X, np.ndarray):
            if X.ndim != 2:
                raise self._not_2d(
                    f"a {X.ndim}-D array of shape {X.shape}" if X.ndim else "a scalar"
                )
            if self.n_features is not None and X.shape[1] != self.n_features:
                raise self._count_error(X.shape[1])
        return X

    def _list_to_array(self, rows: Sequence[Any]) -> np.ndarray:
        if len(rows) and not all(
            isinstance(r, (Sequence, np.ndarray)) and not isinstance(r, (str, bytes)) for r in rows
        ):
            raise self._not_2d(f"a flat list of {len(rows)} values")
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            first = len(rows[0])
            bad = next(i for i, r in enumerate(rows) if len(r) != first)
            raise InvalidInputError(
                f"row {bad} has {len(rows[bad])} values, row 0 has {first}",
                row=bad,
                detail=f"{len(rows[bad])} values where row 0 has {first}",
            )
        if not rows:
            return np.empty((0, self.n_features or 0), dtype=np.float64)
        if self.single:
            try:
                return np.asarray(rows, dtype=np.float64)
            except (ValueError, TypeError):
                pass  # diagnosed cell by cell below
        array = np.empty((len(rows), len(rows[0])), dtype=object)
        array[:] = [list(r) for r in rows]
        return array

    def _frame_in_order(self, df: Any) -> Any:
        columns = list(df.columns)
        if len(set(columns)) != len(columns):
            dupes = sorted({str(c) for c in columns if columns.count(c) > 1})
            raise InvalidInputError(f"duplicate columns: {', '.join(dupes[:5])}")
        if self.names is not None and columns and all(isinstance(c, str) for c in columns):
            if columns == list(self.names):
                return df
            present = set(columns)
            missing = [n for n in self.names if n not in present]
            extra = [c for c in columns if c not in self._name_index]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing columns: {_preview(missing)}")
                if extra:
                    parts.append(f"unexpected columns: {_preview(extra)}")
                raise InvalidInputError(
                    f"model {self.model!r}: {'; '.join(parts)}",
                    hint="pass exactly the model's feature columns (any order)",
                )
            return df[list(self.names)]
        if self.n_features is not None and len(columns) != self.n_features:
            raise self._count_error(len(columns))
        return df

    def _column_label(self, j: int, frame_names: Sequence[Any] | None = None) -> str | int:
        if frame_names is not None and isinstance(frame_names[j], str):
            return str(frame_names[j])
        if self.names is not None:
            return self.names[j]
        return j

    # ------------------------------------------------------------- converting

    def _matrix(self, X: Any, dtype: Any) -> np.ndarray:
        """All-numeric rows as one C-contiguous (n_rows, n_features) array of ``dtype``, held to
        the contract (on their float64 values, before any float32 rounding)."""
        X = self._normalise(X)
        if isinstance(X, np.ndarray):
            if X.dtype.kind in "fiub":
                if self._checks and X.dtype.kind == "f":
                    self._check_cells(X)
                return _cast(X, dtype)
            try:
                values = X.astype(np.float64)
            except (ValueError, TypeError):
                for j in range(X.shape[1]):
                    _numeric(X[:, j], np.float64, self._column_label(j))
                raise InvalidInputError("the rows are not all numbers") from None
            if self._checks:
                self._check_cells(values)
            return _cast(values, dtype)
        df = self._frame_in_order(X)
        names = list(df.columns)
        table: np.ndarray | None = None
        if all(_numeric_dtype(t) for t in df.dtypes):
            try:
                table = df.to_numpy(dtype=np.float64, na_value=np.nan)
            except (ValueError, TypeError):
                table = None
        if table is None:
            table = np.empty((len(df), len(names)), dtype=np.float64)
            for j in range(len(names)):
                table[:, j] = _numeric(df.iloc[:, j], np.float64, self._column_label(j, names))
        if self._checks:
            self._check_cells(table, names)
        return _cast(table, dtype)

    def _columns(self, X: Any, *, for_sklearn: bool) -> list[np.ndarray]:
        """One 1-D array per feature column, typed for its input (multi-input artifacts)."""
        X = self._normalise(X)
        names: list[Any] | None = None
        if not isinstance(X, np.ndarray):
            X = self._frame_in_order(X)
            names = list(X.columns)
        out: list[np.ndarray] = []
        for slot in self.slots:
            for j in range(slot.start, slot.start + slot.width):
                label = self._column_label(j, names)
                values = X[:, j] if names is None else X.iloc[:, j]
                if slot.dtype == "string":
                    text = _strings(values, keep_missing=True)
                    gaps = ~_is_text(text)
                    if gaps.any():
                        if self._checks and not self._rule(j).nan:
                            raise self._refusal(int(np.argmax(gaps)), j, np.nan, label)
                        if not for_sklearn:
                            text[gaps] = STRING_MISSING
                    out.append(text)
                elif slot.dtype == "int64":
                    out.append(_integers(values, label))
                else:
                    floats = _numeric(values, np.float64, label)
                    if self._checks:
                        self._check_cells(floats[:, None], start=j, label=label)
                    out.append(_cast(floats, np.float64 if for_sklearn else _NP_DTYPES[slot.dtype]))
        return out

    # ------------------------------------------------------------ the contract

    def _refused_cells(self, values: np.ndarray, start: int = 0) -> np.ndarray | None:
        """Cells of ``values`` (columns ``start..`` of the features) the contract refuses."""
        k = values.shape[1]
        if not self._rules:  # no fixed width: the default rule for every column
            assert self.contract is not None
            rule = self.contract.default
            allow_nan, allow_inf = np.full(k, rule.nan), np.full(k, rule.inf)
            limit = np.full(k, np.inf if rule.max_abs is None else rule.max_abs)
        else:
            allow_nan = self._allow_nan[start : start + k]
            allow_inf = self._allow_inf[start : start + k]
            limit = self._max_abs[start : start + k]
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.isfinite(values)
            if np.isfinite(limit).any():
                ok &= np.abs(values) <= limit
        if ok.all():
            return None
        bad = ~ok & ~((np.isnan(values) & allow_nan) | (np.isinf(values) & allow_inf))
        return bad if bad.any() else None

    def _check_cells(self, values: np.ndarray, names: Sequence[Any] | None = None, *,
                     start: int = 0, label: str | int | None = None) -> None:  # fmt: skip
        """Raise for the first cell (row by row) that the contract refuses."""
        bad = self._refused_cells(values, start)
        if bad is None:
            return
        i, j = (int(v) for v in np.argwhere(bad)[0])
        column = label if label is not None else self._column_label(start + j, names)
        raise self._refusal(i, start + j, float(values[i, j]), column)

    def _rule(self, j: int) -> Rule:
        if self._rules:
            return self._rules[j]
        assert self.contract is not None
        return self.contract.default

    def _refusal(self, row: int, j: int, value: float, column: str | int) -> InvalidInputError:
        assert self.contract is not None
        where = f"column {column!r}" if isinstance(column, str) else f"column {column}"
        if np.isnan(value):
            detail = f"a missing value (NaN) is refused: {self.contract.reason('nan')}"
        elif np.isinf(value):
            detail = f"{'inf' if value > 0 else '-inf'} is refused: {self.contract.reason('inf')}"
        else:
            limit = self._rule(j).max_abs
            detail = (f"{value:.6g} is refused: beyond +-{limit:.6g}, "
                      f"{self.contract.reason('big')}")  # fmt: skip
        return InvalidInputError(
            f"row {row}, {where}: {detail}",
            row=row,
            column=column,
            detail=detail,
            hint="fix or drop the row first",
        )

    # ------------------------------------------------------------- screening

    def screen(self, X: Any) -> Screening:
        """Every row the model cannot take (a cell that is not a number, or that the contract
        refuses), with the first one's error; a problem of the whole input (wrong columns or
        width) still raises."""
        X = self._normalise(X)
        names: list[Any] | None = None
        if not isinstance(X, np.ndarray):
            X = self._frame_in_order(X)
            names = list(X.columns)
        n = len(X)
        width = X.shape[1]
        bad = np.zeros(n, dtype=bool)
        first: tuple[int, InvalidInputError] | None = None
        for j in range(width):
            slot = self._slot_of(j)
            label = self._column_label(j, names)
            values = X[:, j] if names is None else X.iloc[:, j]
            if slot.dtype == "string":
                problem = np.zeros(n, dtype=bool)
                if self._checks and not self._rule(j).nan:
                    problem = ~_is_text(_strings(values, keep_missing=True))
                if problem.any():
                    i = int(np.argmax(problem))
                    if first is None or i < first[0]:
                        first = (i, self._refusal(i, j, np.nan, label))
                    bad |= problem
                continue
            floats, unparsed = _parsed(values)
            problem = unparsed.copy()
            if slot.dtype == "int64":
                with np.errstate(invalid="ignore"):
                    problem |= ~np.isfinite(floats) | (np.floor(floats) != floats)
            elif self._checks:
                refused = self._refused_cells(floats[:, None], j)
                if refused is not None:
                    problem |= refused[:, 0]
            if not problem.any():
                continue
            i = int(np.argmax(problem))
            if first is None or i < first[0]:
                if unparsed[i] or slot.dtype == "int64":
                    what = "a whole number" if slot.dtype == "int64" else "a number"
                    first = (i, _bad_cell(i, label, _values(values)[i], what))
                else:
                    first = (i, self._refusal(i, j, float(floats[i]), label))
            bad |= problem
        return Screening(bad, first[1] if first is not None else None)

    def _slot_of(self, j: int) -> _Slot:
        for slot in self.slots:
            if slot.width < 0 or slot.start <= j < slot.start + slot.width:
                return slot
        return self.slots[-1]


def probe_feeds(
    inputs: Sequence[TensorSpec], rows: np.ndarray | Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Feeds for parity rows: a float matrix, or cells by column for a per-column artifact.

    Per-column rows hold every column the model was fitted on; those it drops
    (``remainder="drop"``) are no inputs of the artifact, so they are left out here.
    """
    builder = FeedBuilder(inputs, None)
    if isinstance(rows, np.ndarray):
        return builder.feeds(rows)
    return builder.feeds({spec.column_name: rows[spec.column_name] for spec in inputs})


def _preview(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(quoted(i, repr_=False) for i in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _numeric_dtype(dtype: Any) -> bool:
    kind = getattr(dtype, "kind", "O")
    return kind in "fiub"


def _values(values: Any) -> np.ndarray:
    if _is_series(values):
        if _numeric_dtype(values.dtype):
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
        return np.asarray(values.to_numpy(dtype=object))
    return np.asarray(values)


def _cast(values: np.ndarray, dtype: Any) -> np.ndarray:
    """``values`` as a C-contiguous array of ``dtype``; a float32 cast of a value beyond its
    range (refused already where a contract applies) gives inf without a numpy warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(values, dtype=dtype)


def _is_text(values: np.ndarray) -> np.ndarray:
    """Which cells of an object column of ``_strings`` are text (the rest are gaps)."""
    return np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))


def _parsed(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """One column as float64, and which cells are not numbers (they become NaN)."""
    array = _values(values)
    n = len(array)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64), np.zeros(n, dtype=bool)
    try:
        return array.astype(np.float64), np.zeros(n, dtype=bool)
    except (ValueError, TypeError):
        pass
    out = np.full(n, np.nan)
    unparsed = np.zeros(n, dtype=bool)
    for i, value in enumerate(array):
        if _missing(value):
            continue
        try:
            out[i] = float(value)
        except (ValueError, TypeError):  # one column of one bad chunk: rare
            unparsed[i] = True
    return out, unparsed


def _bad_cell(row: int, column: str | int, value: Any, what: str) -> InvalidInputError:
    where = f"column {quoted(column)}" if isinstance(column, str) else f"column {column}"
    detail = f"{quoted(value)} is not {what}"
    return InvalidInputError(f"row {row}, {where}: {detail}", row=row, column=column, detail=detail)


def _numeric(values: Any, dtype: Any, column: str | int) -> np.ndarray:
    """One column as numbers; the first cell that is not one is named with its row."""
    if _is_series(values) and _numeric_dtype(values.dtype):
        return np.asarray(values.to_numpy(dtype=dtype, na_value=np.nan))
    array = _values(values)
    if array.dtype.kind in "fiub":
        return array.astype(dtype, copy=False)
    try:
        return array.astype(dtype)
    except (ValueError, TypeError):
        pass
    for i, value in enumerate(array):
        if _missing(value):
            continue
        try:
            float(value)
        except (ValueError, TypeError):
            raise _bad_cell(i, column, value, "a number") from None
    # every cell parses on its own (e.g. pd.NA mixed with numbers): convert one by one
    return np.array([np.nan if _missing(v) else float(v) for v in array], dtype=dtype)


def _integers(values: Any, column: str | int) -> np.ndarray:
    array = _values(values)
    if array.dtype.kind in "iub":
        return array.astype(np.int64, copy=False)
    floats = _numeric(array, np.float64, column)
    bad = ~np.isfinite(floats) | (np.floor(floats) != floats)
    if bad.any():
        i = int(np.argmax(bad))
        raise _bad_cell(i, column, array[i], "a whole number")
    return floats.astype(np.int64)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, and pd.NA raises below
    except TypeError:
        return True


def _strings(values: Any, *, keep_missing: bool) -> np.ndarray:
    """One text column as an object array of ``str`` (missing values as ``STRING_MISSING``, or kept
    as NaN for scikit-learn, whose imputers look for NaN)."""
    array = _values(values)
    if array.dtype.kind == "U":
        return array.astype(object)
    out = np.empty(len(array), dtype=object)
    for i, value in enumerate(array):
        if isinstance(value, str):
            out[i] = value
        elif _missing(value):
            out[i] = np.nan if keep_missing else STRING_MISSING
        else:
            out[i] = str(value)
    return out
