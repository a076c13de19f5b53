"""The only skl2onnx import: a fitted estimator plus its signature in, an ONNX artifact out.

Four fixes of our own live here. skl2onnx 1.20's HistGradientBoosting converter hands numpy bools
to an integer-list node attribute, which protobuf 7 rejects; we register a wrapper that gives the
converter a container that turns them into ints. Its decision-tree, forest and gradient-boosting
converters send every missing value (NaN) to the right child, where scikit-learn (>= 1.3) follows
each node's learned ``missing_go_to_left``; the same wrapper sets ONNX's
``nodes_missing_value_tracks_true`` from it, so a forest routes NaN as scikit-learn does.
skl2onnx's double-precision tree graphs declare a double output for TreeEnsemble ops that only
produce float (ai.onnx.ml opset <= 3); we keep the double thresholds and input, and cast the
ensemble's float output up to double. And its Gaussian mixture converter compares the opset
with a number, which fails in double precision when the opset names each domain (as ours does);
its wrapper hands it the main domain's.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from packaging.version import Version

from alphapulse_onnx.errors import ConversionError, UnsupportedModelError, first_line
from alphapulse_onnx.signature import DType, InputSignature, TensorSpec, final_estimator

Precision = Literal["float32", "float64"]

CUSTOM_CONVERTER_HINT = (
    "register a converter plugin (see docs/how-to/custom-converters.md) or remove the model"
)

# Highest default-domain opset each onnxruntime release implements (its docs' compatibility table).
_ORT_MAX_OPSET: tuple[tuple[str, int], ...] = (
    ("1.14", 18),
    ("1.15", 19),
    ("1.17", 20),
    ("1.18", 21),
    ("1.21", 22),
    ("1.23", 23),
)
# ai.onnx.ml 3 is the highest that skl2onnx's tree and linear converters emit and every
# onnxruntime >= 1.14 runs; it also carries the *_as_tensor double thresholds.
ML_OPSET = 3

_TREE_OPS = {"TreeEnsembleRegressor", "TreeEnsembleClassifier"}
_REGISTER_LOCK = threading.Lock()
_registered = False


def max_opset_for_onnxruntime(version: str) -> int:
    release = Version(Version(version).base_version)
    best = 17
    for floor, opset in _ORT_MAX_OPSET:
        if release >= Version(floor):
            best = opset
    return best


@functools.cache
def target_opset() -> int:
    """The newest opset that skl2onnx has tested, onnx knows and the installed onnxruntime runs."""
    import skl2onnx

    return min(
        int(skl2onnx.get_latest_tested_opset_version()),
        onnx.defs.onnx_opset_version(),
        max_opset_for_onnxruntime(onnxruntime.__version__),
    )


@dataclass(frozen=True)
class Artifact:
    """A converted model: serialised graph plus what it exposes."""

    onnx_bytes: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    ml_opset: int
    precision: Precision


class _TreeAttributeContainer:
    """Forwards to skl2onnx's container, fixing the attributes tree converters hand it.

    Numpy bools become ints (protobuf 7 rejects them). When the graph's input is double, the
    thresholds, leaf weights and base values, still full float64 Python values at this point, go
    into the ``*_as_tensor`` double attributes instead of float32 ones, so branch decisions are
    made in double precision as HistGradientBoosting makes them.
    """

    def __init__(self, inner: Any, *, double: bool, trees: list[Any] | None = None) -> None:
        self._inner = inner
        self._double = double
        self._trees = trees

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        clean = {key: _plain_attribute(value) for key, value in attrs.items()}
        if op_type in _TREE_OPS and self._trees is not None:
            _learned_missing_directions(clean, self._trees)
        if self._double and op_type in _TREE_OPS:
            clean["op_version"] = ML_OPSET  # the *_as_tensor attributes arrived in ai.onnx.ml 3
            for key in _DOUBLE_TREE_ATTRIBUTES:
                if key in clean:
                    values = np.asarray(clean.pop(key), dtype=np.float64)
                    clean[f"{key}_as_tensor"] = numpy_helper.from_array(values, f"{key}_as_tensor")
        return self._inner.add_node(op_type, inputs, outputs, *args, **clean)


_DOUBLE_TREE_ATTRIBUTES = ("nodes_values", "nodes_hitrates", "base_values", "target_weights",
                           "class_weights")  # fmt: skip


def _trees_of(model: Any) -> list[Any] | None:
    """The fitted ``Tree`` objects of a tree model, numbered as skl2onnx numbers its trees: the
    tree itself, a forest's estimators in order, a gradient boosting's stages by row (stage
    ``i``, class ``k`` is tree ``i * n_classes + k``). ``None`` for other models."""
    if hasattr(model, "tree_"):
        return [model.tree_]
    estimators = getattr(model, "estimators_", None)
    if estimators is None or hasattr(model, "_predictors"):
        return None
    items = np.asarray(estimators, dtype=object).ravel()
    if not all(hasattr(item, "tree_") for item in items):
        return None
    return [item.tree_ for item in items]


def _learned_missing_directions(attrs: dict[str, Any], trees: list[Any]) -> None:
    """``nodes_missing_value_tracks_true`` from each split's ``missing_go_to_left``.

    ONNX sends a missing value down the true branch (``x <= threshold``, scikit-learn's left
    child) when the flag is 1. A node that does not match the tree it claims to be (another
    feature) is left alone: parity on probe rows holding NaN then says so.
    """
    flags = attrs.get("nodes_missing_value_tracks_true")
    tree_ids = attrs.get("nodes_treeids")
    node_ids = attrs.get("nodes_nodeids")
    modes = attrs.get("nodes_modes")
    features = attrs.get("nodes_featureids")
    if flags is None or tree_ids is None or node_ids is None or modes is None or features is None:
        return
    fixed = list(flags)
    for k, (tree_id, node_id, mode) in enumerate(zip(tree_ids, node_ids, modes, strict=True)):
        if _mode_name(mode) == "LEAF" or not 0 <= int(tree_id) < len(trees):
            continue
        tree = trees[int(tree_id)]
        directions = getattr(tree, "missing_go_to_left", None)
        if directions is None or not 0 <= int(node_id) < tree.node_count:
            continue
        if int(tree.feature[int(node_id)]) != int(features[k]):
            return  # not the numbering assumed: change nothing
        fixed[k] = int(bool(directions[int(node_id)]))
    attrs["nodes_missing_value_tracks_true"] = fixed


def _mode_name(mode: Any) -> str:
    return mode.decode() if isinstance(mode, bytes) else str(mode)


def _plain_attribute(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
        return [int(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64).tolist()
    return value


# skl2onnx aliases of the tree-ensemble converters that go through _TreeAttributeContainer.
_TREE_ALIASES = {
    "SklearnDecisionTreeClassifier": "sklearn.tree.DecisionTreeClassifier",
    "SklearnDecisionTreeRegressor": "sklearn.tree.DecisionTreeRegressor",
    "SklearnExtraTreeClassifier": "sklearn.tree.ExtraTreeClassifier",
    "SklearnExtraTreeRegressor": "sklearn.tree.ExtraTreeRegressor",
    "SklearnRandomForestClassifier": "sklearn.ensemble.RandomForestClassifier",
    "SklearnRandomForestRegressor": "sklearn.ensemble.RandomForestRegressor",
    "SklearnExtraTreesClassifier": "sklearn.ensemble.ExtraTreesClassifier",
    "SklearnExtraTreesRegressor": "sklearn.ensemble.ExtraTreesRegressor",
    "SklearnGradientBoostingClassifier": "sklearn.ensemble.GradientBoostingClassifier",
    "SklearnGradientBoostingRegressor": "sklearn.ensemble.GradientBoostingRegressor",
    "SklearnHistGradientBoostingClassifier": "sklearn.ensemble.HistGradientBoostingClassifier",
    "SklearnHistGradientBoostingRegressor": "sklearn.ensemble.HistGradientBoostingRegressor",
}


_MIXTURE_ALIASES = {
    "SklearnGaussianMixture": "sklearn.mixture.GaussianMixture",
    "SklearnBayesianGaussianMixture": "sklearn.mixture.BayesianGaussianMixture",
}


def _register_fixes() -> None:
    """Wrap the tree-ensemble converters once per process (idempotent, thread-safe)."""
    global _registered
    with _REGISTER_LOCK:
        if _registered:
            return
        import importlib

        from skl2onnx import update_registered_converter
        from skl2onnx.common._registration import (
            _converter_pool,
            get_converter,
            get_shape_calculator,
        )

        from alphapulse_onnx import plugins

        fixes = dict.fromkeys(_TREE_ALIASES, _fixing_tree_attributes)
        fixes.update(dict.fromkeys(_MIXTURE_ALIASES, _with_main_opset))
        for alias, dotted in {**_TREE_ALIASES, **_MIXTURE_ALIASES}.items():
            module, _, name = dotted.rpartition(".")
            model_type = getattr(importlib.import_module(module), name, None)
            if model_type is None or alias not in _converter_pool:
                continue
            update_registered_converter(
                model_type,
                alias,
                get_shape_calculator(alias),
                fixes[alias](get_converter(alias)),
                options=_converter_pool[alias].get_allowed_options(),
                overwrite=True,
            )
        plugins.register_builtin_converters()
        _registered = True


def _fixing_tree_attributes(original: Any) -> Any:
    # skl2onnx checks the converter's arity: exactly (scope, operator, container).
    import inspect

    function = getattr(original, "_fct", original)  # skl2onnx wraps it in RegisteredConverter
    takes_op_version = "op_version" in inspect.signature(function).parameters

    def converter(scope: Any, operator: Any, container: Any) -> Any:
        double = type(operator.inputs[0].type).__name__ == "DoubleTensorType"
        trees = _trees_of(operator.raw_operator)
        wrapped = _TreeAttributeContainer(container, double=double, trees=trees)
        if double and takes_op_version:
            # At op_version 1 the forest/HGB converters round thresholds to float32 first.
            return function(scope, operator, wrapped, op_version=ML_OPSET)
        return original(scope, operator, wrapped)

    return converter


def _with_main_opset(original: Any) -> Any:
    """The converter, seeing the main domain's opset where it compares the opset with a number."""

    def converter(scope: Any, operator: Any, container: Any) -> Any:
        if isinstance(operator.target_opset, dict):
            operator.target_opset = operator.target_opset.get("", target_opset())
        return original(scope, operator, container)

    return converter


@contextlib.contextmanager
def _translate_errors(model: Any) -> Iterator[None]:
    """skl2onnx appends a how-to paragraph to its errors: keep line one, name the estimator."""
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    try:
        yield
    except (MissingShapeCalculator, MissingConverter) as exc:
        missing = _unsupported_type(str(exc)) or type(model).__name__
        raise UnsupportedModelError(
            f"no ONNX converter for {missing}", hint=CUSTOM_CONVERTER_HINT
        ) from exc
    except (UnsupportedModelError, ConversionError):
        raise
    except NotImplementedError as exc:
        raise UnsupportedModelError(
            f"{type(model).__name__}: skl2onnx cannot convert this configuration: "
            f"{first_line(exc)}",
            hint=CUSTOM_CONVERTER_HINT,
        ) from exc
    except Exception as exc:  # converter bugs surface as bare ValueError/RuntimeError/TypeError
        raise ConversionError(
            f"{type(model).__name__}: conversion failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


def _unsupported_type(message: str) -> str | None:
    match = re.search(r"type '<class '([\w.]+)'>'|type '([\w.]+)'", message)
    if match:
        return (match.group(1) or match.group(2)).rsplit(".", 1)[-1]
    return None


def convert(model: Any, signature: InputSignature, *, precision: Precision = "float32",
            opset: int | None = None) -> Artifact:  # fmt: skip
    """Compile ``model`` to ONNX with tensor outputs (no ZipMap) for ``signature``'s inputs."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    _register_fixes()
    main_opset = opset or target_opset()
    tensor_type = DoubleTensorType if precision == "float64" else FloatTensorType
    initial_types = [("X", tensor_type([None, signature.n_features]))]
    if signature.per_column:
        initial_types = _column_types(signature, tensor_type)
        model = _columns_by_position(model)
    _require_extras(model)
    _refuse_feature_subsets(model)
    model = _without_transform_only_options(model)
    options = _classifier_options(model) if signature.task == "classification" else {}
    with _translate_errors(model), warnings.catch_warnings():
        # Reading deprecated attributes (SVC's probA_) is the converter's business, not the user's.
        warnings.simplefilter("ignore", FutureWarning)
        proto = to_onnx(
            model,
            initial_types=initial_types,
            options=options,
            target_opset={"": main_opset, "ai.onnx.ml": ML_OPSET},
        )
        if precision == "float64":
            _boosted_classifiers_to_double_regressors(proto)
            _cast_tree_outputs_to_double(proto)
        proto.producer_name = "alphapulse-onnx"
        proto.doc_string = f"{type(model).__name__} compiled by apo"
        onnx.checker.check_model(proto, full_check=True)
    dtype: DType = precision
    inputs: tuple[TensorSpec, ...] = (TensorSpec("X", dtype, (None, signature.n_features)),)
    if signature.per_column:
        columns = _columns_by_input(proto, signature)
        _drop_unused_inputs(proto)
        onnx.checker.check_model(proto, full_check=True)
        inputs = _input_specs(proto, columns)
    return Artifact(
        onnx_bytes=proto.SerializeToString(),
        inputs=inputs,
        outputs=_output_specs(proto),
        opset=main_opset,
        ml_opset=ML_OPSET,
        precision=precision,
    )


def _refuse_feature_subsets(model: Any) -> None:
    """skl2onnx's IsolationForest converter assumes that every tree saw every column."""
    last = final_estimator(model)
    drawn = getattr(last, "_max_features", None)
    total = getattr(last, "n_features_in_", None)
    if type(last).__name__ == "IsolationForest" and drawn is not None and drawn != total:
        raise UnsupportedModelError(
            f"IsolationForest draws {drawn} of its {total} features per tree (max_features "
            "below 1.0), which skl2onnx cannot convert",
            hint="refit it with max_features=1.0, or " + CUSTOM_CONVERTER_HINT,
        )


def _without_transform_only_options(model: Any) -> Any:
    """A copy with options that only shape ``transform()`` reset, where skl2onnx refuses them.

    ``VotingClassifier(flatten_transform=True)`` (the default) changes nothing that predict or
    predict_proba return, yet skl2onnx rejects it; the source model itself is left untouched.
    """
    import copy

    voting = [est for est in _walk_estimators(model) if getattr(est, "flatten_transform", False)]
    if not voting:
        return model
    model = copy.deepcopy(model)
    for est in _walk_estimators(model):
        if getattr(est, "flatten_transform", False):
            est.flatten_transform = False
    return model


def _walk_estimators(model: Any, depth: int = 0) -> list[Any]:
    """``model`` and every estimator inside it (pipelines, ensembles, calibrators, stackers)."""
    found = [model] if hasattr(model, "get_params") else []
    if depth > 8:
        return found
    for attr in ("steps", "transformers_", "estimators_", "named_estimators_",
                 "calibrated_classifiers_", "estimator", "final_estimator_"):  # fmt: skip
        value = getattr(model, attr, None)
        if isinstance(value, dict):
            value = list(value.values())
        elif value is not None and not isinstance(value, (list, tuple)):
            value = [value]
        for item in value or ():
            child = item[1] if isinstance(item, tuple) and len(item) >= 2 else item
            if not isinstance(child, (str, int, float, np.ndarray)):
                found.extend(_walk_estimators(child, depth + 1))
    return found


def _classifier_options(model: Any) -> dict[Any, Any]:
    """ZipMap off where a classifier's converter has one; LinearSVC's and a few others have none.

    skl2onnx adds ``zipmap=True`` for any classifier whose options name nothing, and then rejects
    it for converters without a ZipMap; naming their own ``nocl`` default keeps it out, also for
    classifiers nested in calibrators, ensembles and pipelines.
    """
    options: dict[Any, Any] = {}
    for est in _walk_estimators(model):
        allowed = _allowed_options(final_estimator(est))  # a pipeline takes its last step's
        if allowed is None or "zipmap" in allowed:
            continue
        if "nocl" in allowed:
            options[id(est)] = {"nocl": False}
    if _allowed_options(final_estimator(model)) is None or "zipmap" in (
        _allowed_options(final_estimator(model)) or {}
    ):
        options[id(model)] = {"zipmap": False}
    return options


def _allowed_options(est: Any) -> dict[str, Any] | None:
    """The options skl2onnx's converter for ``est`` takes; ``None`` when it has no converter."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import _converter_pool

    alias = sklearn_operator_name_map.get(type(est))
    registered = _converter_pool.get(alias) if alias else None
    if registered is None:
        return None
    return dict(registered.get_allowed_options() or {})


def _column_types(signature: InputSignature, float_type: Any) -> list[tuple[str, Any]]:
    """One ``[None, 1]`` input per original column: text, integer categories or numbers."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType

    by_dtype = {"string": StringTensorType, "int64": Int64TensorType}
    # skl2onnx names each graph input after these, made safe; it cannot name one after nothing.
    return [(spec.column_name or f"column_{i}", by_dtype.get(spec.dtype, float_type)([None, 1]))
            for i, spec in enumerate(signature.inputs)]  # fmt: skip


def _columns_by_position(model: Any) -> Any:
    """``model`` with its leading ColumnTransformer picking columns by position, not by name.

    skl2onnx looks a column picked by name up among the graph's inputs by that name, so a name it
    cannot give an input (the empty one) would fail; by position, every name works. The copies
    are shallow: the fitted steps are shared, never changed.
    """
    import copy

    if getattr(model, "transformers_", None) is not None:
        positions = getattr(model, "_transformer_to_input_indices", None)
        if not positions:
            return model  # an old fit without them: its names still work, all but the empty one
        by_position = copy.copy(model)
        by_position.transformers_ = [
            (label, transformer, [int(i) for i in positions.get(label, ())])
            for label, transformer, _ in model.transformers_
        ]
        return by_position
    steps = getattr(model, "steps", None)
    if not steps:
        return model
    # The first step that sees the columns (imbalanced-learn's samplers are skipped at predict).
    runs = [
        i
        for i, (_, step) in enumerate(steps)
        if step is not None and not isinstance(step, str) and not hasattr(step, "fit_resample")
    ]
    first = runs[0] if runs else None
    if first is None:
        return model
    by_position = copy.copy(model)
    label, head = steps[first]
    by_position.steps = [*steps[:first], (label, _columns_by_position(head)), *steps[first + 1 :]]
    return by_position


def _require_extras(model: Any) -> None:
    from alphapulse_onnx.converters import boosters

    message = boosters.missing_extra_message(model)
    if message is not None:
        raise UnsupportedModelError(message, hint=boosters.BOOST_HINT)


def _drop_unused_inputs(proto: onnx.ModelProto) -> None:
    """Columns the model drops (``remainder="drop"``) are not inputs: their type is unknowable."""
    used = {name for node in proto.graph.node for name in node.input}
    used |= {output.name for output in proto.graph.output}
    kept = [i for i in proto.graph.input if i.name in used]
    if len(kept) != len(proto.graph.input):
        del proto.graph.input[:]
        proto.graph.input.extend(kept)


def _columns_by_input(proto: onnx.ModelProto, signature: InputSignature) -> dict[str, str]:
    """The user's column behind each graph input, by position.

    skl2onnx finds a ColumnTransformer's columns by the names it is given, then names the graph's
    inputs after them made safe (``"price ($)"`` becomes ``price____``, a clash gets a number), in
    the order given: so the n-th input reads the n-th column, whatever it is called.
    """
    names = [graph_input.name for graph_input in proto.graph.input]
    if len(names) != len(signature.inputs):
        raise ConversionError(
            f"the graph has {len(names)} inputs for the model's {len(signature.inputs)} columns"
        )
    return {name: spec.column_name for name, spec in zip(names, signature.inputs, strict=True)}


def _input_specs(proto: onnx.ModelProto, columns: dict[str, str]) -> tuple[TensorSpec, ...]:
    """The graph's inputs, each with the user's column it reads."""
    specs = []
    for graph_input in proto.graph.input:
        dtype = _ELEM_DTYPES.get(graph_input.type.tensor_type.elem_type)
        if dtype is None:
            raise ConversionError(
                f"input {graph_input.name!r} (column {columns[graph_input.name]!r}) is not a "
                "tensor of a known type"
            )
        specs.append(
            TensorSpec(graph_input.name, dtype, (None, 1), column=columns[graph_input.name])
        )
    return tuple(specs)


_ELEM_DTYPES: dict[int, DType] = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT64: "int64",
    TensorProto.STRING: "string",
}


def _output_specs(proto: onnx.ModelProto) -> tuple[TensorSpec, ...]:
    specs = []
    for output in proto.graph.output:
        tensor = output.type.tensor_type
        dims: list[int | None] = [
            d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim
        ]
        dtype = _ELEM_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise ConversionError(f"output {output.name!r} is not a tensor of a known type")
        specs.append(TensorSpec(output.name, dtype, tuple(dims)))
    return tuple(specs)


def _cast_tree_outputs_to_double(proto: onnx.ModelProto) -> None:
    """Let TreeEnsemble ops compare in double but emit float, then cast up: ORT's typing demands it.

    skl2onnx emits the double thresholds (``nodes_values_as_tensor``) we want, then declares the
    op's score output double, which ai.onnx.ml <= 3 kernels never produce.
    """
    graph = proto.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in [*graph.output, *graph.value_info]}
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        new_nodes.append(node)
        if node.op_type not in _TREE_OPS or node.domain != "ai.onnx.ml":
            continue
        if not any(a.name.endswith("_as_tensor") for a in node.attribute):
            continue  # a float ensemble: nothing to fix
        # Regressor: output 0 is the score. Classifier: output 1 (probabilities/scores).
        index = 0 if node.op_type == "TreeEnsembleRegressor" else 1
        if index >= len(node.output):
            continue
        original = node.output[index]
        if declared.get(original) == TensorProto.FLOAT:
            continue  # declared float already (RandomForestClassifier's double path does this)
        as_float = f"{original}__apo_float"
        node.output[index] = as_float
        new_nodes.append(
            helper.make_node("Cast", [as_float], [original], to=TensorProto.DOUBLE,
                             name=f"{node.name or node.op_type}__apo_cast_double")
        )  # fmt: skip
    del graph.node[:]
    graph.node.extend(new_nodes)
    # Intermediate value_info written for the old double output would now contradict the graph.
    kept = [vi for vi in graph.value_info if not vi.name.endswith("__apo_float")]
    del graph.value_info[:]
    graph.value_info.extend(kept)


_NODE_ATTRIBUTES = (
    "nodes_featureids", "nodes_modes", "nodes_nodeids", "nodes_treeids", "nodes_truenodeids",
    "nodes_falsenodeids", "nodes_values_as_tensor", "nodes_missing_value_tracks_true",
    "nodes_hitrates_as_tensor",
)  # fmt: skip


def _boosted_classifiers_to_double_regressors(proto: onnx.ModelProto) -> None:
    """Rebuild boosted TreeEnsembleClassifiers so their thresholds really compare in double.

    onnxruntime's TreeEnsembleClassifier rounds thresholds to float even when given
    ``nodes_values_as_tensor``; its TreeEnsembleRegressor does not. A boosted classifier is a sum
    of raw scores plus a sigmoid or softmax, so we emit exactly that: the regressor for the raw
    scores, then the link function and an arg-max over the class labels, as scikit-learn does.
    """
    graph = proto.graph
    rebuilt: list[onnx.NodeProto] = []
    initializers: list[TensorProto] = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        transform = attrs.get("post_transform", b"NONE")
        if (node.op_type != "TreeEnsembleClassifier" or "nodes_values_as_tensor" not in attrs
                or transform not in (b"LOGISTIC", b"SOFTMAX")):  # fmt: skip
            rebuilt.append(node)
            continue
        prefix = f"{node.name or 'tree'}__apo"
        class_ids = list(attrs["class_ids"])
        n_targets = max(class_ids) + 1
        labels_int = attrs.get("classlabels_int64s")
        labels = (
            numpy_helper.from_array(np.asarray(labels_int, dtype=np.int64), f"{prefix}_classes")
            if labels_int
            else helper.make_tensor(f"{prefix}_classes", TensorProto.STRING,
                                    [len(attrs["classlabels_strings"])],
                                    list(attrs["classlabels_strings"]))
        )  # fmt: skip
        initializers.append(labels)
        kwargs = {k: attrs[k] for k in _NODE_ATTRIBUTES if k in attrs}
        kwargs.update(
            target_ids=class_ids,
            target_nodeids=list(attrs["class_nodeids"]),
            target_treeids=list(attrs["class_treeids"]),
            target_weights_as_tensor=attrs["class_weights_as_tensor"],
            n_targets=n_targets,
            aggregate_function="SUM",
            post_transform="NONE",
        )
        if "base_values_as_tensor" in attrs:
            kwargs["base_values_as_tensor"] = attrs["base_values_as_tensor"]
        label_out, proba_out = node.output[0], node.output[1]
        rebuilt.append(helper.make_node("TreeEnsembleRegressor", list(node.input),
                                        [f"{prefix}_scores_f"], name=f"{prefix}_scores",
                                        domain="ai.onnx.ml", **kwargs))  # fmt: skip
        rebuilt.append(helper.make_node("Cast", [f"{prefix}_scores_f"], [f"{prefix}_scores"],
                                        to=TensorProto.DOUBLE, name=f"{prefix}_cast"))  # fmt: skip
        if transform == b"LOGISTIC" and n_targets == 1:
            initializers.append(numpy_helper.from_array(np.array(1.0), f"{prefix}_one"))
            initializers.append(numpy_helper.from_array(np.array(0.5), f"{prefix}_half"))
            initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64),
                                                        f"{prefix}_axis1"))  # fmt: skip
            rebuilt += [
                helper.make_node("Sigmoid", [f"{prefix}_scores"], [f"{prefix}_p1"]),
                helper.make_node("Sub", [f"{prefix}_one", f"{prefix}_p1"], [f"{prefix}_p0"]),
                helper.make_node("Concat", [f"{prefix}_p0", f"{prefix}_p1"], [proba_out], axis=1),
                # scikit-learn takes the first class on an exact 0.5 tie: index 1 only if p1 > .5
                helper.make_node("Greater", [f"{prefix}_p1", f"{prefix}_half"], [f"{prefix}_gt"]),
                helper.make_node(
                    "Cast", [f"{prefix}_gt"], [f"{prefix}_idx2"], to=TensorProto.INT64
                ),
                helper.make_node("Squeeze", [f"{prefix}_idx2", f"{prefix}_axis1"],
                                 [f"{prefix}_idx"]),
            ]  # fmt: skip
        else:
            softmax = helper.make_node("Softmax", [f"{prefix}_scores"], [proba_out], axis=1)
            if transform == b"LOGISTIC":
                softmax = helper.make_node("Sigmoid", [f"{prefix}_scores"], [proba_out])
            rebuilt += [
                softmax,
                helper.make_node("ArgMax", [proba_out], [f"{prefix}_idx"], axis=1, keepdims=0),
            ]
        rebuilt.append(helper.make_node("Gather", [labels.name, f"{prefix}_idx"], [label_out],
                                        axis=0))  # fmt: skip
    del graph.node[:]
    graph.node.extend(rebuilt)
    graph.initializer.extend(initializers)
