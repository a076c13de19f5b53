"""Nearest-neighbour models that skl2onnx gets wrong: distance weights, and every radius model.

skl2onnx 1.20's converters, measured against scikit-learn 1.9:

- ``KNeighborsRegressor``/``KNeighborsClassifier(weights="distance")``: its TopK branch hands
  back the distances negated, which it then floors at 1e-6, so every weight is equal: the graph
  answers the *uniform* average (off by up to 17 on the diabetes targets).
- Where a query coincides with training points it floors the distance at 1e-6; scikit-learn gives
  those points all the weight (``sklearn.neighbors._base._get_weights``).
- ``RadiusNeighborsRegressor``/``RadiusNeighborsClassifier``, whatever the weights: points outside
  the radius get the index -1, which onnxruntime's ArrayFeatureExtractor rejects at run time, and
  it keeps distances ``< radius`` where scikit-learn keeps ``<= radius``.

So these are built here from scratch: distances to every training point (a Scan over the query
rows, exact differences as in scikit-learn's trees, so a coincident point is at exactly 0), the k
nearest by TopK (the lower index first among ties, as brute force does) or the points within the
radius, scikit-learn's weights, and the weighted average or class votes. Uniform k-neighbour
models stay with skl2onnx's converter, which answers them correctly.

Supported: the metrics ``euclidean``, ``sqeuclidean``, ``manhattan``, ``chebyshev`` and
``minkowski`` (any ``p >= 1``), float32 and float64, multi-output regression, and a radius
classifier's ``outlier_label``. Refused, each with one line: callable weights or metrics, other
metrics, weighted Minkowski (``metric_params={"w": ...}``), ``metric="precomputed"``, a model
fitted on a sparse matrix, and multi-output classifiers.

Two limits are scikit-learn's own. Among training points tied at the k-th distance, its k-d and
ball trees keep whichever their traversal met first; the graph keeps the lowest index, as brute
force does. And brute-force Euclidean search (``algorithm="auto"`` picks it above 15 features)
measures distances as ``|x|^2 - 2 x.y + |y|^2``, so a coincident point is at ~1e-8, not 0, and
gets a large weight rather than all of it: answers differ by that rounding there (~1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper

from alphapulse_onnx.converters._graph import Graph
from alphapulse_onnx.errors import UnsupportedModelError

_FIX_HINT = "refit it with metric='euclidean' (or 'manhattan', 'chebyshev', 'minkowski')"
# scikit-learn's names for each metric apo builds here.
_METRIC_NAMES = {
    "euclidean": "euclidean", "l2": "euclidean", "sqeuclidean": "sqeuclidean",
    "manhattan": "manhattan", "cityblock": "manhattan", "l1": "manhattan",
    "chebyshev": "chebyshev", "infinity": "chebyshev", "minkowski": "minkowski",
}  # fmt: skip
_ALIASES = {
    "KNeighborsClassifier": "SklearnKNeighborsClassifier",
    "KNeighborsRegressor": "SklearnKNeighborsRegressor",
    "RadiusNeighborsClassifier": "SklearnRadiusNeighborsClassifier",
    "RadiusNeighborsRegressor": "SklearnRadiusNeighborsRegressor",
}


def _describe(model: Any) -> str:
    return f"{type(model).__name__}(weights={model.weights!r}, metric={model.metric!r})"


def metric_of(model: Any) -> tuple[str, float]:
    """The metric apo computes for ``model`` and its Minkowski power (2 where unused)."""
    metric = getattr(model, "effective_metric_", model.metric)
    params = dict(getattr(model, "effective_metric_params_", None) or {})
    if callable(metric) or not isinstance(metric, str) or metric not in _METRIC_NAMES:
        raise UnsupportedModelError(
            f"{_describe(model)}: apo converts nearest neighbours with the metrics "
            f"{', '.join(sorted(_METRIC_NAMES))} only",
            hint=_FIX_HINT,
        )
    if params.get("w") is not None:
        raise UnsupportedModelError(
            f"{_describe(model)}: weighted Minkowski distances (metric_params w) have no ONNX "
            "form in apo",
            hint="scale the columns before the model instead of weighting the metric",
        )
    name = _METRIC_NAMES[metric]
    p = float(params.get("p", getattr(model, "p", 2) or 2))
    if name == "minkowski":
        if p == 1:
            name = "manhattan"
        elif p == 2:
            name = "euclidean"
        elif np.isinf(p):
            name = "chebyshev"
    return name, p


def _check(model: Any) -> None:
    if callable(model.weights):
        raise UnsupportedModelError(
            f"{type(model).__name__} with a weights function has no ONNX form",
            hint="refit it with weights='uniform' or 'distance'",
        )
    if model.metric == "precomputed":
        raise UnsupportedModelError(
            f"{type(model).__name__}(metric='precomputed') takes distances, not rows",
            hint="refit it on the rows themselves with a metric such as 'euclidean'",
        )
    if not isinstance(model._fit_X, np.ndarray):
        raise UnsupportedModelError(
            f"{type(model).__name__} was fitted on a sparse matrix, which apo does not embed",
            hint="refit it on a dense array",
        )
    if getattr(model, "outputs_2d_", False) and hasattr(model, "classes_"):
        raise UnsupportedModelError(
            f"{_describe(model)} predicts several outputs; apo converts single-output "
            "neighbour classifiers",
            hint="fit one classifier per output",
        )
    metric_of(model)


def _reduced_distances(g: Graph, x: str, train: np.ndarray, metric: str, p: float) -> str:
    """[N, M]: each query row's reduced distance (squared for Euclidean) to every training row.

    A Scan over the query rows keeps memory at one [M, F] difference per row, and computes the
    differences exactly, as scikit-learn's trees do: a query on a training point is at 0.
    """
    t = g.const(train)
    row_in, row_out = g.name("row"), g.name("dist")
    diff = g.name("diff")
    nodes = [helper.make_node("Sub", [t, row_in], [diff])]
    if metric in ("euclidean", "sqeuclidean"):
        terms = g.name("sq")
        nodes.append(helper.make_node("Mul", [diff, diff], [terms]))
    else:
        terms = g.name("abs")
        nodes.append(helper.make_node("Abs", [diff], [terms]))
        if metric == "minkowski":
            powered = g.name("pow")
            nodes.append(helper.make_node("Pow", [terms, g.const(p)], [powered]))
            terms = powered
    reduce_op = "ReduceMax" if metric == "chebyshev" else "ReduceSum"
    axes_as_input = g.opset >= (13 if reduce_op == "ReduceSum" else 18)
    if axes_as_input:
        nodes.append(helper.make_node(reduce_op, [terms, g.const(np.array([1]))], [row_out],
                                      keepdims=0))  # fmt: skip
    else:
        nodes.append(helper.make_node(reduce_op, [terms], [row_out], axes=[1], keepdims=0))
    body = helper.make_graph(
        nodes,
        g.name("distances_body"),
        [helper.make_tensor_value_info(row_in, g.elem_type, [train.shape[1]])],
        [helper.make_tensor_value_info(row_out, g.elem_type, [train.shape[0]])],
    )
    return g.op("Scan", [x], body=body, num_scan_inputs=1)


def _distances(g: Graph, reduced: str, metric: str, p: float) -> str:
    if metric == "euclidean":
        return g.op("Sqrt", [reduced])
    if metric == "minkowski":
        return g.op("Pow", [reduced, g.const(1.0 / p)])
    return reduced


def _radius_in_reduced_units(radius: float, metric: str, p: float) -> float:
    # scikit-learn compares reduced distances with the reduced radius (r**2 for Euclidean).
    if metric == "euclidean":
        return radius * radius
    if metric == "minkowski":
        return float(radius**p)
    return radius


def _distance_weights(g: Graph, distances: str, keep: str | None) -> str:
    """scikit-learn's ``_get_weights(..., "distance")``: 1/d, except that a row with a point at
    distance 0 (1/d infinite) gives those points weight 1 and the others 0. ``keep``: the points
    that count (within the radius); the others weigh 0."""
    inverse = g.op("Reciprocal", [distances])
    infinite = g.op("IsInf", [inverse])
    zero = g.const(0.0)
    if keep is not None:
        infinite = g.op("And", [infinite, keep])
        inverse = g.op("Where", [keep, inverse, zero])
    any_infinite = g.reduce("ReduceMax", g.cast(infinite), [1], keepdims=True)
    has_infinite = g.op("Greater", [any_infinite, zero])
    return g.op("Where", [has_infinite, g.cast(infinite), inverse])


def _label_constants(g: Graph, classes: np.ndarray, model: Any) -> tuple[str, Any]:
    """The classes as the label output's type (int64 or text), as skl2onnx's shape says."""
    if classes.dtype.kind in "OUS":
        return g.const(classes.astype(str)), str
    values = classes.astype(np.float64)
    if not np.array_equal(values, np.round(values)):
        raise UnsupportedModelError(
            f"{_describe(model)} has non-integer numeric class labels, which ONNX labels "
            "cannot carry",
            hint="encode the labels as integers or text before fitting",
        )
    return g.const(classes.astype(np.int64)), int


def _convert(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    model = operator.raw_operator
    _check(model)
    metric, p = metric_of(model)
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    g = Graph(scope, container, double=double, prefix="apo_nn")
    x = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, (DoubleTensorType, FloatTensorType)):
        x = g.cast(x)  # integer or boolean columns
    train = np.asarray(model._fit_X, dtype=g.dtype)
    reduced = _reduced_distances(g, x, train, metric, p)
    radius = getattr(model, "radius", None)
    classifier = hasattr(model, "classes_")
    if classifier:
        encoded = np.asarray(model._y).ravel()
        n_classes = len(model.classes_)
        targets = (encoded[:, None] == np.arange(n_classes)[None, :]).astype(g.dtype)
    else:
        targets = np.asarray(model._y, dtype=g.dtype).reshape(train.shape[0], -1)
    if radius is None:
        k = int(model.n_neighbors)
        top, index = g.ops("TopK", [reduced, g.const(np.array([k]))], 2, largest=0, sorted=1)
        weights = _distance_weights(g, _distances(g, top, metric, p), None)
        picked = g.op("Gather", [g.const(targets), index], axis=0)  # [N, k, width]
        per_row = g.op("Reshape", [weights, g.const(np.array([-1, k, 1]))])
        sums = g.reduce("ReduceSum", g.op("Mul", [picked, per_row]), [1], keepdims=False)
    else:
        bound = g.const(_radius_in_reduced_units(float(radius), metric, p))
        inside = g.op("LessOrEqual", [reduced, bound])
        if model.weights == "uniform":
            weights = g.cast(inside)
        else:
            weights = _distance_weights(g, _distances(g, reduced, metric, p), inside)
        sums = g.op("MatMul", [weights, g.const(targets)])  # [N, width]
    total = g.reduce("ReduceSum", weights, [1], keepdims=True)
    if not classifier:
        # No point within the radius: 0/0, NaN, as scikit-learn answers (with a warning).
        g.op("Div", [sums, total], out=operator.outputs[0].full_name)
        return
    _classify(g, operator, model, sums, radius is not None)


def _classify(g: Graph, operator: Any, model: Any, votes: str, radius: bool) -> None:
    """Votes to probabilities and labels, as ``predict_proba``/``predict`` make them."""
    classes = np.asarray(model.classes_)
    labels, _ = _label_constants(g, classes, model)
    zero = g.const(0.0)
    total = g.reduce("ReduceSum", votes, [1], keepdims=True)
    outside: str | None = None
    stray_label: Any = None
    if radius:
        # No training point within the radius: the outlier label's class gets probability 1;
        # an outlier label that is no class leaves every probability 0 and is the label itself.
        outside = g.op("Equal", [total, zero])
        label = getattr(model, "outlier_label_", None)
        if label is not None:
            hits = np.flatnonzero(classes == label[0])
            if hits.size == 1:
                one_hot = (np.arange(len(classes)) == hits[0]).astype(g.dtype)[None, :]
                votes = g.op("Where", [outside, g.const(one_hot), votes])
                total = g.reduce("ReduceSum", votes, [1], keepdims=True)
            else:
                stray_label = label[0]
        total = g.op("Where", [g.op("Equal", [total, zero]), g.const(1.0), total])
    g.op("Div", [votes, total], out=operator.outputs[1].full_name)
    # The first class among equal votes, as scikit-learn's argmax and weighted_mode take.
    best = g.op("ArgMax", [votes], axis=1, keepdims=0)
    if stray_label is None:
        g.op("Gather", [labels, best], axis=0, out=operator.outputs[0].full_name)
        return
    chosen = g.op("Gather", [labels, best], axis=0)
    assert outside is not None
    flat = g.op("Reshape", [outside, g.const(np.array([-1]))])
    stray = np.asarray([stray_label])
    stray_const = g.const(stray.astype(str) if classes.dtype.kind in "OUS" else stray,
                          None if classes.dtype.kind in "OUS" else np.int64)  # fmt: skip
    g.op("Where", [flat, stray_const, chosen], out=operator.outputs[0].full_name)


def _dispatching(original: Any, *, radius: bool) -> Any:
    # skl2onnx checks the converter's arity: exactly (scope, operator, container).
    def convert(scope: Any, operator: Any, container: Any) -> Any:
        if not radius and operator.raw_operator.weights == "uniform":
            return original(scope, operator, container)  # skl2onnx answers these right
        return _convert(scope, operator, container)

    return convert


def register() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common._registration import _converter_pool, get_converter, get_shape_calculator
    from sklearn import neighbors

    for class_name, alias in _ALIASES.items():
        update_registered_converter(
            getattr(neighbors, class_name),
            alias,
            get_shape_calculator(alias),
            _dispatching(get_converter(alias), radius=class_name.startswith("Radius")),
            options=_converter_pool[alias].get_allowed_options(),
            overwrite=True,
        )
