"""Precision lives in the ONNX graph for strongly typed TensorRT (11+): FP16 graphs and INT8 Q/DQ graphs.

TensorRT 11 builds only strongly typed networks: there is no ``BuilderFlag.FP16`` / ``INT8`` and no
INT8 calibrator; every layer runs in the type its ONNX tensors have. This module derives, from an
exported FP32 ONNX file (the exported-model contract: float32 inputs and outputs):

* :func:`convert_to_fp16` / :func:`write_fp16_onnx`: every float32 weight, constant and intermediate
  tensor becomes float16; the graph inputs and outputs stay float32 with a Cast next to them, so the
  runtime's float32 I/O buffers serve every precision. Inputs that an operator's schema fixes to
  float32 (e.g. ``Resize``'s ``scales``) stay float32.
* :func:`write_qdq_onnx`: static INT8 quantization with QuantizeLinear / DequantizeLinear pairs
  (symmetric, per-channel weights, as TensorRT requires), calibrated on real frames with
  ``onnxruntime.quantization`` (the activation ranges are measured by running the FP32 graph on them).

Only ``onnx`` (and, for INT8, ``onnxruntime``) are needed; torch is not.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from depth_sfm_ros.fileio import atomic_write

__all__ = ["convert_to_fp16", "write_fp16_onnx", "write_qdq_onnx", "QuantizationUnavailable"]

log = logging.getLogger(__name__)

_SUFFIX_FP16 = "__fp16"
_SUFFIX_FP32 = "__fp32"


class QuantizationUnavailable(RuntimeError):
    """``onnxruntime.quantization`` (needed for the INT8 Q/DQ graph of strongly typed TensorRT) is missing."""


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def _fixed_float_slots(node: Any, opset: int) -> set[int]:
    """Input positions of ``node`` whose type the operator schema fixes to tensor(float) (not a type
    parameter that admits float16), e.g. Resize's ``scales``."""
    import onnx

    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return set()
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    fixed = set()
    for index in range(len(node.input)):
        if not schema.inputs:
            break
        formal = schema.inputs[min(index, len(schema.inputs) - 1)]
        allowed = constraints.get(formal.type_str, {formal.type_str})
        if "tensor(float)" in allowed and "tensor(float16)" not in allowed:
            fixed.add(index)
    return fixed


def _tensor_to_fp16(tensor: Any) -> Any:
    """A float32 TensorProto as float16 (same name); values beyond the float16 range are clipped."""
    from onnx import numpy_helper

    array = numpy_helper.to_array(tensor).astype(np.float32)
    limit = float(np.finfo(np.float16).max)
    if array.size and float(np.max(np.abs(array))) > limit:
        log.warning("FP16 conversion: %s has values beyond +-%g; clipped", tensor.name or "a constant", limit)
    return numpy_helper.from_array(np.clip(array, -limit, limit).astype(np.float16), tensor.name)


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of an FP32 ONNX model whose graph inputs and outputs stay float32.

    Args:
        model: an ``onnx.ModelProto`` (not modified).

    Returns:
        The converted ``onnx.ModelProto``, checked with ``onnx.checker`` and strict type inference.

    Raises:
        ValueError: the graph uses a construct this converter does not handle (subgraphs, float
            tensors in attributes other than Constant / ConstantOfShape, a result that fails type checking);
            the message names it.
    """
    import onnx
    from onnx import TensorProto, helper

    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    opset = _opset(model)
    types: dict[str, int] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    initializers = {t.name: t for t in graph.initializer}
    for name, tensor in initializers.items():
        types[name] = tensor.data_type
    constant_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for name, node in constant_nodes.items():
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None:
            types[name] = value.data_type

    # which float32 values are read where: in slots that take float16, or in slots fixed to float32
    half_readers: dict[str, list[tuple[int, int]]] = defaultdict(list)  # value -> [(node position, slot)]
    fixed_readers: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for position, node in enumerate(graph.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"FP16 conversion: node {node.name or node.op_type} has a subgraph (not supported)")
        fixed = _fixed_float_slots(node, opset)
        for index, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                (fixed_readers if index in fixed else half_readers)[name].append((position, index))

    graph_inputs = {v.name for v in graph.input if v.type.tensor_type.elem_type == FLOAT}
    graph_outputs = {v.name for v in graph.output if v.type.tensor_type.elem_type == FLOAT}
    new_initializers, head, tail = [], [], []

    # constants (initializers and Constant nodes): float16 for float16 readers, float32 for fixed ones
    for name in [n for n in list(initializers) + list(constant_nodes) if types.get(n) == FLOAT]:
        if not half_readers.get(name):
            continue  # only fixed-float readers (or none): stays float32
        if fixed_readers.get(name) or name in graph_outputs:
            half_name = name + _SUFFIX_FP16
            for position, index in half_readers[name]:
                graph.node[position].input[index] = half_name
        else:
            half_name = name
        if name in initializers:
            tensor = _tensor_to_fp16(initializers[name])
            tensor.name = half_name
            if half_name == name:
                initializers[name].CopyFrom(tensor)
            else:
                new_initializers.append(tensor)
        else:
            node = constant_nodes[name]
            attr = next(a for a in node.attribute if a.name == "value")
            half = _tensor_to_fp16(attr.t)
            if half_name == name:
                attr.t.CopyFrom(half)
            else:
                head.append(helper.make_node("Constant", [], [half_name], value=half, name=half_name))
        types[half_name] = FLOAT16

    # computed values and graph inputs become float16; Casts feed the slots fixed to float32
    for node in graph.node:
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == FLOAT:
                to.i = FLOAT16
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == FLOAT:
                    attr.t.CopyFrom(_tensor_to_fp16(attr.t))
        elif node.op_type != "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                    raise ValueError(f"FP16 conversion: {node.op_type} node {node.name!r} has a float32 tensor "
                                     f"attribute {attr.name!r} (not supported)")
    before: dict[int, list[Any]] = defaultdict(list)  # node position -> Casts to place right before it
    for name, readers in fixed_readers.items():
        if name in initializers or name in constant_nodes or name in graph_inputs:
            continue  # still float32: read directly
        cast_name = name + _SUFFIX_FP32
        source = name + _SUFFIX_FP16 if name in graph_outputs else name
        for position, index in readers:
            graph.node[position].input[index] = cast_name
        cast = helper.make_node("Cast", [source], [cast_name], to=FLOAT, name=cast_name)
        before[min(position for position, _ in readers)].append(cast)  # after the producer, before any reader
    for name in graph_inputs:
        half_name = name + _SUFFIX_FP16
        for position, index in half_readers.get(name, []):
            graph.node[position].input[index] = half_name
        head.append(helper.make_node("Cast", [name], [half_name], to=FLOAT16, name=half_name))
    for name in graph_outputs:
        half_name = name + _SUFFIX_FP16
        if name in graph_inputs or name in initializers or name in constant_nodes:
            raise ValueError(f"FP16 conversion: graph output {name!r} is not computed by a node (not supported)")
        for node in graph.node:
            node.output[:] = [half_name if out == name else out for out in node.output]
            node.input[:] = [half_name if inp == name else inp for inp in node.input]
        tail.append(helper.make_node("Cast", [half_name], [name], to=FLOAT, name=name + "__to_fp32"))

    nodes = []
    ordered = [n for position, original in enumerate(graph.node) for n in before.get(position, []) + [original]]
    for node in list(head) + ordered + tail:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        nodes.append(copy)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_initializers)
    del graph.value_info[:]  # stale types; recomputed below
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, check_type=True)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx's InferenceError / ValidationError
        raise ValueError(f"FP16 conversion produced an invalid graph ({exc}); build an fp32 engine or convert "
                         f"the model with NVIDIA ModelOpt AutoCast") from exc
    return model


def write_fp16_onnx(src: str | Path, dst: str | Path) -> Path:
    """:func:`convert_to_fp16` of the ONNX file ``src`` written atomically to ``dst``; returns ``dst``."""
    import onnx

    dst = Path(dst)
    model = convert_to_fp16(onnx.load(str(src)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst) as handle:
        handle.write(model.SerializeToString())
    log.info("wrote the FP16 graph %s (from %s)", dst, Path(src).name)
    return dst


def _feeds(input_names: Sequence[str], frames: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """Calibration feeds: one frame for one-input nets; consecutive (prev, cur) pairs for two-input nets."""
    if list(input_names) == ["image"] or len(input_names) == 1:
        for frame in frames:
            yield {input_names[0]: np.ascontiguousarray(frame[None], dtype=np.float32)}
        return
    for i in range(1, len(frames)):
        pair = {"image_prev": frames[i - 1], "image_cur": frames[i]}
        yield {name: np.ascontiguousarray(pair.get(name, frames[i])[None], dtype=np.float32) for name in input_names}


def write_qdq_onnx(src: str | Path, dst: str | Path, calibration_images: np.ndarray) -> Path:
    """Statically quantize ``src`` to INT8 with Q/DQ nodes calibrated on ``calibration_images``.

    Args:
        src: FP32 ONNX file (exported-model contract).
        dst: where the Q/DQ ONNX goes (written atomically).
        calibration_images: (N, 3, H, W) float32 RGB in [0, 1], N >= 2, in temporal order
            (two-input nets see consecutive pairs).

    Raises:
        QuantizationUnavailable: ``onnxruntime.quantization`` cannot be imported.
        ValueError: fewer than 2 frames or a wrong shape.
    """
    import onnx

    frames = np.asarray(calibration_images, dtype=np.float32)
    if frames.ndim != 4 or frames.shape[1] != 3 or len(frames) < 2:
        raise ValueError(f"int8 needs calibration_images (N >= 2, 3, H, W) float32, got shape {frames.shape}")
    try:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
    except ImportError as exc:
        raise QuantizationUnavailable(
            f"INT8 on TensorRT 11+ needs a Q/DQ ONNX graph, made here with onnxruntime.quantization, which cannot "
            f"be imported ({exc}); pip install onnxruntime (the CPU package is enough for calibration), or build "
            f"fp16 / fp32 engines") from exc
    src, dst = Path(src), Path(dst)
    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = _feeds(names, frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = dst.with_name(dst.name + ".staging.onnx")
    try:
        quantize_static(str(src), str(staging), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "QuantizeBias": False})  # TensorRT: int8 Q/DQ only, float bias
        data = staging.read_bytes()
    finally:
        staging.unlink(missing_ok=True)
    with atomic_write(dst) as handle:
        handle.write(data)
    log.info("wrote the INT8 Q/DQ graph %s (%d calibration frames)", dst, len(frames))
    return dst
