"""What a loaded object holds, checked where scikit-learn's own code would trust it blindly.

Trees walk their nodes by the indices stored in them; sparse kernels index memory with theirs;
kernels, losses and stacking classifiers call what they hold. Each check here holds such an
object to what its code expects, so a crafted file cannot make ``predict`` read outside an
array or call something else. ``check_parts`` runs when an object's state is set;
``check_links`` once the whole file is read, for every tree at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from alphapulse_onnx.loading.checks import Context, is_int, type_name

if TYPE_CHECKING:
    from alphapulse_onnx.loading.state import LoadContext


def _instance_dict(inst: Any) -> dict[str, Any]:
    return object.__getattribute__(inst, "__dict__")  # type: ignore[no-any-return]


def check_links(links: list[tuple[Any, Any, Any, int | None]], ctx: Context) -> None:
    """Every tree's nodes, checked together once the file is read (before anything runs them).

    Leaves link nowhere; split nodes link to later nodes of the same tree and use a real
    feature. scikit-learn numbers children after their parent, so "forward and in range" also
    proves that walking a tree from its root ends at a leaf.
    """
    if not links:
        return
    counts = np.array([len(left) for left, _, _, _ in links], dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    size = np.repeat(counts, counts)
    limit = np.repeat([2**62 if n is None else n for *_, n in links], counts)
    left = np.concatenate([link[0] for link in links]).astype(np.int64, copy=False)
    right = np.concatenate([link[1] for link in links]).astype(np.int64, copy=False)
    feature = np.concatenate([link[2] for link in links]).astype(np.int64, copy=False)
    index = np.arange(len(left)) - starts
    leaf = (left == -1) & (right == -1)
    split = (left > index) & (right > index) & (np.maximum(left, right) < size)
    split &= (feature >= 0) & (feature < limit)
    if not bool(np.all(leaf | split)):
        raise ctx.refuse("the file gives a tree nodes that link outside the tree")


def tree_predictor_parts(inst: Any, ctx: LoadContext) -> None:
    """HistGradientBoosting's TreePredictor: forward node links (checked with the trees after
    reading), and category bitsets inside their table."""
    nodes = _instance_dict(inst).get("nodes")
    if not isinstance(nodes, np.ndarray) or nodes.dtype.names is None:
        raise ctx.refuse("the file gives a TreePredictor malformed node records")
    if not {"left", "right", "feature_idx", "is_leaf"} <= set(nodes.dtype.names):
        raise ctx.refuse("the file gives a TreePredictor node records without child links")
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, -1, nodes["left"].astype(np.int64))
    right = np.where(leaf, -1, nodes["right"].astype(np.int64))
    ctx.links.append((left, right, np.where(leaf, 0, nodes["feature_idx"]), None))
    if "is_categorical" in nodes.dtype.names and "bitset_idx" in nodes.dtype.names:
        bitsets = _instance_dict(inst).get("raw_left_cat_bitsets")
        used = nodes["bitset_idx"][nodes["is_categorical"].astype(bool) & ~leaf]
        limit = len(bitsets) if isinstance(bitsets, np.ndarray) else 0
        if used.size and (used.min() < 0 or used.max() >= limit):
            raise ctx.refuse("the file gives a TreePredictor category bitsets out of range")


def _sparse_parts(inst: Any, ctx: LoadContext) -> None:
    """scipy's own format checks: every stored index inside the matrix's shape (its kernels
    index memory with them unchecked)."""
    shape = _instance_dict(inst).get("_shape")
    if not (type(shape) is tuple and len(shape) == 2 and all(is_int(d) and d >= 0 for d in shape)):
        raise ctx.refuse(f"the file gives a {type_name(inst)} a malformed shape")
    try:
        if hasattr(inst, "check_format"):
            inst.check_format(full_check=True)
        else:
            inst._check()
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ctx.refuse(f"the file gives a {type_name(inst)} indices outside it ({exc})") from None


# Attributes that name a method scikit-learn then looks up and calls on another object.
_METHOD_NAMES = {
    "StackingClassifier": "stack_method_",
    "StackingRegressor": "stack_method_",
    "FixedThresholdClassifier": "response_method",
    "TunedThresholdClassifierCV": "response_method",
}
_RESPONSE_METHODS = frozenset(
    {"auto", "predict", "predict_proba", "decision_function", "predict_log_proba"}
)
_KERNEL_HOLDERS = ("GaussianProcessRegressor", "GaussianProcessClassifier",
                   "_BinaryGaussianProcessClassifierLaplace")  # fmt: skip


def check_parts(inst: Any, ctx: LoadContext) -> None:
    """Objects whose methods call what they hold may hold only what those calls expect.

    Kernels call their sub-kernels, losses their Cython loss and link, stacking and threshold
    classifiers call a method named in their state: each is held to its own kind here, so a
    file cannot route those calls anywhere else.
    """
    cls = type(inst)
    name, module = cls.__name__, cls.__module__
    held = _instance_dict(inst)
    if module == "sklearn.gaussian_process.kernels":
        from sklearn.gaussian_process.kernels import Kernel

        parts = [held[k] for k in ("k1", "k2", "kernel") if k in held]
        parts += list(held.get("kernels") or ())
        if not all(isinstance(part, Kernel) for part in parts):
            raise ctx.refuse(f"the file gives the kernel {name} a part that is not a kernel")
        if name == "PairwiseKernel" and type(held.get("metric", "linear")) is not str:
            raise ctx.refuse("the file gives a PairwiseKernel a metric that is not a name")
    elif name in _KERNEL_HOLDERS and module.startswith("sklearn.gaussian_process"):
        from sklearn.gaussian_process.kernels import Kernel

        for key in ("kernel", "kernel_"):
            if held.get(key) is not None and not isinstance(held[key], Kernel):
                raise ctx.refuse(f"the file gives a {name} a {key} that is not a kernel")
    elif module == "sklearn._loss.loss":
        from sklearn._loss import _loss as cython_losses
        from sklearn._loss.link import BaseLink

        closs, link = held.get("closs"), held.get("link")
        cython_loss_types = tuple(
            value for name, value in vars(cython_losses).items()
            if name.startswith("Cy") and isinstance(value, type)
        )  # fmt: skip
        if not isinstance(closs, cython_loss_types) or not isinstance(link, BaseLink):
            raise ctx.refuse(f"the file gives the loss {name} parts that are not losses")
    elif name in _METHOD_NAMES and module.startswith("sklearn."):
        value = held.get(_METHOD_NAMES[name])
        methods = value if type(value) is list else [value]
        if value is not None and not all(
            type(m) is str and m in _RESPONSE_METHODS for m in methods
        ):  # fmt: skip
            raise ctx.refuse(f"the file makes a {name} call a method other than a prediction")
    elif module.startswith("scipy.sparse."):
        _sparse_parts(inst, ctx)
    elif name == "TreePredictor":
        tree_predictor_parts(inst, ctx)
    elif name == "FrozenModel" and module == "alphapulse_onnx.loading.standins":
        from sklearn.base import BaseEstimator

        if not isinstance(held.get("estimator"), BaseEstimator):
            raise ctx.refuse("the file freezes something that is not an estimator")
