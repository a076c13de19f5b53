"""FP16 and INT8 variants of an artifact, and an honest account of what each one changed.

- FP16: floats inside the graph in half precision with onnxruntime's own converter
  (``onnxruntime.transformers.float16``; ``onnxconverter_common`` when that is missing), inputs and
  outputs kept float32 (``keep_io_types``). The ``ai.onnx.ml`` ops (trees, linear models, scalers)
  have no FP16 kernel and stay float32 (``op_block_list``). We count the original nodes that now
  compute in FP16; when none does, the variant is *unchanged* and is not built: converting a tree
  model only adds a float16 round trip on its outputs, which costs accuracy and buys nothing.
- INT8: ``onnxruntime.quantization.quantize_dynamic`` on the MatMul/Gemm weights (MLPs, and
  linear models expressed as MatMul). Graphs without such nodes are reported unchanged.

``make`` builds a variant, checks it against scikit-learn on the probe rows like any artifact (as
a lossy one: ``parity.compare(lossy=True)``), and keeps it, written next to the artifact, only
when parity holds within the tolerance.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from alphapulse_onnx import parity, probing, runtime
from alphapulse_onnx._fsutil import atomic_write_bytes, sha256_bytes
from alphapulse_onnx.errors import first_line
from alphapulse_onnx.feeds import probe_feeds
from alphapulse_onnx.manifest import ArtifactInfo
from alphapulse_onnx.measurements import VariantName, VariantReport, VariantStatus
from alphapulse_onnx.parity import ParityReport, Tolerance
from alphapulse_onnx.signature import InputSignature, TensorSpec

ML_DOMAIN = "ai.onnx.ml"
QUANTIZABLE = ("MatMul", "Gemm")
# Nodes that only move or relabel data: FP16 there changes no arithmetic.
DATA_MOVEMENT = frozenset(
    {
        "Identity",
        "Cast",
        "CastLike",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Shape",
        "Expand",
    }
)


@dataclass(frozen=True)
class Built:
    """A variant graph (or why there is none) and which of the original nodes it changed."""

    name: VariantName
    onnx_bytes: bytes | None
    nodes_total: int
    nodes_changed: int
    changed_ops: tuple[str, ...]
    kept_float32_ops: tuple[str, ...]
    note: str
    tool: str | None = None


def _named(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose every node has a unique name, so nodes can be followed through a rewrite."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    seen: set[str] = set()
    for i, node in enumerate(copy.graph.node):
        if not node.name or node.name in seen:
            node.name = f"apo_node_{i}_{node.op_type}"
        seen.add(node.name)
    return copy


def _fp16_converter() -> tuple[Any, Any, str] | None:
    try:
        from onnxruntime.transformers import float16

        return float16.convert_float_to_float16, float16.DEFAULT_OP_BLOCK_LIST, "onnxruntime"
    except ImportError:
        pass
    try:
        from onnxconverter_common import float16 as occ  # type: ignore[import-not-found]

        return occ.convert_float_to_float16, occ.DEFAULT_OP_BLOCK_LIST, "onnxconverter-common"
    except ImportError:
        return None


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.input, *graph.output, *graph.value_info]
    }
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:  # constants and casts whose outputs inference left untyped
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    types.setdefault(node.output[0], attr.i)
    return types


def build_fp16(onnx_bytes: bytes) -> Built:
    original = _named(onnx.load_from_string(onnx_bytes))
    total = len(original.graph.node)
    converter = _fp16_converter()
    if converter is None:
        return Built(
            "fp16",
            None,
            total,
            0,
            (),
            (),
            "no FP16 converter installed (onnxruntime.transformers or onnxconverter-common)",
        )
    convert, default_block, tool = converter
    ml_ops = sorted({n.op_type for n in original.graph.node if n.domain == ML_DOMAIN})
    block = sorted(set(default_block) | set(ml_ops))
    try:
        with _quiet_logging():
            converted = convert(original, keep_io_types=True, op_block_list=block)
    except Exception as exc:
        return Built(
            "fp16",
            None,
            total,
            0,
            (),
            tuple(ml_ops),
            f"FP16 conversion failed: {first_line(exc)}",
            tool,
        )
    types = _elem_types(converted)
    names = {n.name for n in original.graph.node}
    changed = [
        n
        for n in converted.graph.node
        if n.name in names
        and any(types.get(t) == TensorProto.FLOAT16 for t in [*n.input, *n.output] if t)
    ]
    changed_ops = tuple(sorted({n.op_type for n in changed}))
    kept = tuple(sorted({n.op_type for n in original.graph.node} - set(changed_ops)))
    if not [n for n in changed if n.op_type not in DATA_MOVEMENT]:
        reason = (
            f"{', '.join(ml_ops)}: ai.onnx.ml ops have no FP16 kernel"
            if ml_ops
            else "no float computation to convert"
        )
        return Built(
            "fp16",
            None,
            total,
            0,
            (),
            kept,
            f"0 of {total} nodes compute in FP16 ({reason}); not built",
            tool,
        )
    note = f"{len(changed)} of {total} nodes in FP16 ({', '.join(changed_ops)})"
    if kept:
        note += f"; unchanged: {', '.join(kept)}"
    return Built(
        "fp16", converted.SerializeToString(), total, len(changed), changed_ops, kept, note, tool
    )


def build_int8(onnx_bytes: bytes) -> Built:
    original = _named(onnx.load_from_string(onnx_bytes))
    total = len(original.graph.node)
    targets = [
        n for n in original.graph.node if n.op_type in QUANTIZABLE and n.domain in ("", "ai.onnx")
    ]
    if not targets:
        ops = ", ".join(sorted({n.op_type for n in original.graph.node}))
        return Built(
            "int8",
            None,
            total,
            0,
            (),
            (),
            f"0 of {total} nodes quantized (no MatMul/Gemm: {ops}); not built",
        )
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return Built("int8", None, total, 0, (), (), "onnxruntime.quantization is not installed")
    with tempfile.TemporaryDirectory(prefix="apo-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(original, source)
        try:
            with _quiet_logging():
                quantize_dynamic(
                    source,
                    target,
                    op_types_to_quantize=list(QUANTIZABLE),
                    weight_type=QuantType.QInt8,
                )
            quantized = onnx.load(target)
        except Exception as exc:
            return Built(
                "int8",
                None,
                total,
                0,
                (),
                (),
                f"dynamic quantization failed: {first_line(exc)}",
                "onnxruntime.quantization",
            )
    remaining = {n.name for n in quantized.graph.node}
    changed = [n for n in targets if n.name not in remaining]
    if not changed:
        return Built(
            "int8",
            None,
            total,
            0,
            (),
            (),
            f"0 of {total} nodes quantized; not built",
            "onnxruntime.quantization",
        )
    changed_ops = tuple(sorted({n.op_type for n in changed}))
    note = f"{len(changed)} of {total} nodes quantized to INT8 weights ({', '.join(changed_ops)})"
    return Built(
        "int8",
        quantized.SerializeToString(),
        total,
        len(changed),
        changed_ops,
        (),
        note,
        "onnxruntime.quantization",
    )


def build(name: VariantName, onnx_bytes: bytes, *, precision: str) -> Built:
    if precision != "float32":
        return Built(
            name,
            None,
            0,
            0,
            (),
            (),
            f"not built: the artifact is {precision}; variants start from float32",
        )
    return build_fp16(onnx_bytes) if name == "fp16" else build_int8(onnx_bytes)


@dataclass(frozen=True)
class Reference:
    """What a variant must agree with: scikit-learn's answers on the probe rows, to tolerance."""

    model: Any
    signature: InputSignature
    probe: probing.Probe
    inputs: tuple[TensorSpec, ...]  # the artifact's (variants keep its inputs and their types)
    tolerance: Tolerance

    @property
    def rows(self) -> parity.Rows:
        """The probe rows: a float matrix, or raw cells by column for per-column models."""
        return self.probe.columns if self.probe.columns is not None else self.probe.X

    def feeds(self) -> dict[str, np.ndarray]:
        return probe_feeds(self.inputs, self.rows)


def check(reference: Reference, onnx_bytes: bytes, provider: str) -> ParityReport:
    """Run the variant on ``provider`` over the probe rows and compare it with scikit-learn, as a
    lossy artifact: its labels may differ where its tolerance allows (see ``parity``)."""
    session = runtime.make_session(onnx_bytes, [provider])
    outputs = runtime.run(session, reference.feeds())
    return parity.compare(
        reference.model,
        reference.signature,
        reference.rows,
        outputs,
        probe=reference.probe.kind,
        precision="float32",  # variants start from float32 artifacts and keep float32 outputs
        tolerance=reference.tolerance,
        lossy=True,
    )


def make(
    name: VariantName,
    artifact: ArtifactInfo,
    onnx_bytes: bytes,
    reference: Reference,
    *,
    provider: str,
    manifest_dir: Path,
) -> tuple[VariantReport, bytes | None]:
    """Build the variant of ``artifact`` (whose bytes are ``onnx_bytes``), check it on ``provider``
    and, when parity holds, write it next to the artifact; its bytes come back only when kept."""
    built = build(name, onnx_bytes, precision=artifact.precision)

    def report(status: VariantStatus, note: str, **extra: Any) -> VariantReport:
        return VariantReport(
            name,
            status,
            note,
            nodes_total=built.nodes_total,
            nodes_changed=built.nodes_changed,
            changed_ops=built.changed_ops,
            tool=built.tool,
            **extra,
        )

    if built.onnx_bytes is None:
        failed = "failed" in built.note or "not installed" in built.note
        status: VariantStatus = "unchanged" if built.nodes_total and not failed else "unavailable"
        return report(status, built.note), None
    try:
        checked = check(reference, built.onnx_bytes, provider)
    except Exception as exc:
        return report(
            "unavailable", f"{built.note}; does not run on {provider}: {first_line(exc)}"
        ), None
    if not checked.passed:
        tolerance = reference.tolerance
        note = (
            f"{built.note}; rejected: {checked.reason} (tolerance: proba atol "
            f"{tolerance.proba_atol:g}, regression rtol {tolerance.regression_rtol:g})"
        )
        return report("rejected", note, parity=checked), None
    rel = artifact_path(artifact.path, name)
    atomic_write_bytes(manifest_dir / rel, built.onnx_bytes)
    kept = report(
        "kept", built.note, parity=checked, artifact=rel, sha256=sha256_bytes(built.onnx_bytes)
    )
    return kept, built.onnx_bytes


def artifact_path(artifact_rel: str, name: VariantName) -> str:
    """Where a kept variant goes, relative to the manifest's folder: ``NAME.fp16.onnx`` beside
    ``NAME.onnx``."""
    stem = artifact_rel[: -len(".onnx")] if artifact_rel.endswith(".onnx") else artifact_rel
    return f"{stem}.{name}.onnx"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    # The converters log advice ("consider pre-processing") on the root logger; we report instead.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
