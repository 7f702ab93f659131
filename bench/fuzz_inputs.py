"""Fuzzed input: generated messages, arrays, images and intrinsics against the code that reads them.

    python bench/fuzz_inputs.py [--examples 1400] [--only NAME,...]   # 1400 -> 10,500 cases in all

Each property draws cases with hypothesis and checks that every case ends in either a correct
result (compared with an independent reference) or a clear error (``ValueError`` / ``TypeError``
with a message). Anything else is a violation: another exception type, an empty message, or an
array that differs from the reference (a *silently wrong* result).

Properties (``PROPERTIES``):
  ros_image_decode       depth_sfm_ros.msgs.image_msg_to_numpy on real sensor_msgs/Image (rclpy)
                         messages with random sizes, steps, encodings, endianness, data lengths
  ros_image_encode       msgs.rclpy_msgs.numpy_to_image_msg -> image_msg_to_numpy round trip, random arrays
  ros_camera_info        the node's CameraInfo path (msgs.camera_info_to_model -> geometry.camera_model.resolve_input of
                         a raw topic) on rclpy messages, K with NaN/Inf/0/negative/skew, sizes
  ros_compressed         msgs.compressed_msg_to_numpy on PNG/JPEG bytes, truncated or garbage
  bag_image_decode       the same decoder (depth_sfm_ros.bag.rosbags_io.msg_to_image) on rosbags Image messages
  bag_image_encode       msgs.rosbags_msgs.image_to_msg -> msg_to_image round trip, random arrays
  bag_camera_info        the same camera policy on rosbags messages (bag tools): a rectified topic takes P (K when
                         P is unset), a raw one K or, with distortion, an undistorted pinhole camera; P / K / D with
                         NaN/Inf/0/negative entries
  pipeline_input         Pipeline.process (tiny ONNX model, ONNX Runtime): random image shapes,
                         dtypes, encodings, strides, intrinsics (NaN/Inf, fx <= 0, wrong size), stamps

The test suite (test/test_fuzz_inputs.py) runs the same properties with a few examples each;
this script runs the big numbers and prints a table (property x cases x outcomes) and one JSON
line prefixed ``RESULT``. Exit status 1 when any violation was found.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]


class Violation(AssertionError):
    """A case that ended neither in a correct result nor in a clear ValueError/TypeError."""


# encoding -> (dtype, channels), written out here so the reference does not reuse the code under test
ENCODINGS = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
             "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1),
             "32FC1": (np.float32, 1)}
BOGUS_ENCODINGS = ["", "RGB8", "yuv422", "32FC3", "bayer_rggb8", "mono8 ", "16SC1"]
PIPELINE_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "16UC1", "8UC1")


def pipeline_encoding_key(encoding: Any) -> str | None:
    """The Pipeline's documented leniency: encodings are matched case-insensitively, stripped."""
    if not isinstance(encoding, str):
        return None
    key = encoding.strip().lower()
    return next((e for e in PIPELINE_ENCODINGS if e.lower() == key), None)


def expect_clear_error(fn: Callable[[], Any], what: str) -> str:
    """Run ``fn`` expecting a ValueError/TypeError with a message; returns the outcome name."""
    try:
        fn()
    except (ValueError, TypeError) as exc:
        if not str(exc).strip():
            raise Violation(f"{what}: {type(exc).__name__} without a message") from exc
        return "rejected"
    raise Violation(f"{what}: accepted an invalid input")


def reference_decode(data: bytes, height: int, width: int, step: int, encoding: str, big_endian: bool) -> np.ndarray:
    """Row by row, with an explicit byte order: what an Image with these fields holds."""
    dtype, channels = ENCODINGS[encoding]
    wire = np.dtype(dtype).newbyteorder(">" if big_endian else "<")
    row_bytes = width * channels * wire.itemsize
    rows = [np.frombuffer(data[r * step: r * step + row_bytes], dtype=wire) for r in range(height)]
    image = np.stack(rows).astype(np.dtype(dtype).newbyteorder("="))
    return image.reshape((height, width) if channels == 1 else (height, width, channels))


def same_array(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if got.shape != want.shape or got.dtype.newbyteorder("=") != want.dtype.newbyteorder("="):
        raise Violation(f"{what}: got {got.dtype} {got.shape}, expected {want.dtype} {want.shape}")
    if not np.array_equal(got, want, equal_nan=want.dtype.kind == "f"):
        raise Violation(f"{what}: values differ from the reference")


# --- strategies -------------------------------------------------------------------------------

@st.composite
def raw_image_fields(draw) -> dict:
    """Fields of an Image message: mostly consistent, often with one field off."""
    encoding = draw(st.sampled_from(list(ENCODINGS)) if draw(st.integers(0, 9)) else st.sampled_from(BOGUS_ENCODINGS))
    height, width = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    dtype, channels = ENCODINGS.get(encoding, (np.uint8, 3))
    row_bytes = width * channels * np.dtype(dtype).itemsize
    step = row_bytes + draw(st.sampled_from([0, 0, 0, 1, 3, 8]) | st.integers(-row_bytes, 5))
    step = max(step, 0)
    length = step * height + draw(st.sampled_from([0, 0, 0, 0, -1, 1]) | st.integers(-step * height, 7))
    length = max(length, 0)
    data = draw(st.binary(min_size=length, max_size=length))
    return {"encoding": encoding, "height": height, "width": width, "step": step, "data": data,
            "is_bigendian": draw(st.sampled_from([0, 0, 1]))}


def layout_is_valid(f: dict, strict_length: bool) -> bool:
    """Whether an Image with these fields is a decodable image."""
    if f["encoding"] not in ENCODINGS or f["height"] <= 0 or f["width"] <= 0:
        return False
    dtype, channels = ENCODINGS[f["encoding"]]
    row_bytes = f["width"] * channels * np.dtype(dtype).itemsize
    need = f["step"] * f["height"]
    return f["step"] >= row_bytes and (len(f["data"]) == need if strict_length else len(f["data"]) >= need)


@st.composite
def image_arrays(draw) -> tuple[np.ndarray, str, bool]:
    """(array, encoding, valid): an array and an encoding it does or does not match."""
    encoding = draw(st.sampled_from(list(ENCODINGS)))
    dtype, channels = ENCODINGS[encoding]
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    shape = (height, width) if channels == 1 else (height, width, channels)
    broken = draw(st.sampled_from(["", "", "", "dtype", "channels", "empty", "ndim"]))
    if broken == "dtype":
        dtype = draw(st.sampled_from([d for d in (np.uint8, np.uint16, np.float32, np.float64, np.int16)
                                      if d is not dtype]))
    elif broken == "channels":
        shape = (height, width, draw(st.sampled_from([c for c in (2, 3, 4, 5) if c != channels])))
    elif broken == "empty":
        shape = (0,) + shape[1:]
    elif broken == "ndim":
        shape = (height * width * channels,)
    size = int(np.prod(shape))
    raw = draw(st.binary(min_size=size * np.dtype(dtype).itemsize, max_size=size * np.dtype(dtype).itemsize))
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if draw(st.booleans()) and array.ndim >= 2 and array.shape[1] > 1:
        array = array[:, ::-1]  # a strided view: still a valid image
    return array, encoding, broken == ""


special_floats = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-300, 1e300])


@st.composite
def camera_matrices(draw) -> tuple[list[float], int, int]:
    """(K row-major 9 numbers, width, height): plausible, with some entries replaced by junk."""
    width, height = draw(st.sampled_from([0, 1, 64, 640, 4096])), draw(st.sampled_from([0, 1, 48, 480]))
    fx, fy = draw(st.floats(1.0, 2000.0)), draw(st.floats(1.0, 2000.0))
    cx, cy = draw(st.floats(-10.0, 1000.0)), draw(st.floats(-10.0, 1000.0))
    K = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    for _ in range(draw(st.integers(0, 2))):
        K[draw(st.sampled_from([0, 1, 2, 4, 5]))] = draw(special_floats | st.floats(-1e4, 1e4))
    return K, width, height


def k_is_valid(K: list[float], width: int, height: int) -> bool:
    fx, skew, fy = K[0], K[1], K[4]
    finite = all(math.isfinite(v) for v in K)
    return (finite and width > 0 and height > 0 and fx > 0 and fy > 0
            and abs(skew) <= 1e-6 * max(abs(fx), 1.0))


# --- properties -------------------------------------------------------------------------------

def check_ros_image_decode(fields: dict) -> str:
    from sensor_msgs.msg import Image

    from depth_sfm_ros import msgs

    msg = Image(height=fields["height"], width=fields["width"], encoding=fields["encoding"], step=fields["step"],
                is_bigendian=fields["is_bigendian"], data=fields["data"])
    if not layout_is_valid(fields, strict_length=True):
        outcome = expect_clear_error(lambda: msgs.image_msg_to_numpy(msg), f"decode {fields}")
        try:
            msgs.image_msg_to_numpy(msg)
        except msgs.ImageDecodeError as exc:
            if exc.kind not in ("unsupported_encoding", "empty", "truncated", "bad_step"):
                raise Violation(f"unknown error kind {exc.kind!r}") from exc
        except ValueError as exc:
            raise Violation(f"decode error is not an ImageDecodeError (no kind for the counters): {exc}") from exc
        return outcome
    want = reference_decode(fields["data"], fields["height"], fields["width"], fields["step"], fields["encoding"],
                            bool(fields["is_bigendian"]))
    same_array(msgs.image_msg_to_numpy(msg), want, f"view decode {fields['encoding']}")
    same_array(msgs.image_msg_to_numpy(msg, copy=True), want, f"copy decode {fields['encoding']}")
    return "decoded"


def check_ros_image_encode(case: tuple[np.ndarray, str, bool]) -> str:
    from depth_sfm_ros import msgs
    from depth_sfm_ros.msgs import rclpy_msgs

    array, encoding, valid = case
    if not valid:
        return expect_clear_error(lambda: rclpy_msgs.numpy_to_image_msg(array, encoding), f"encode {encoding}")
    msg = rclpy_msgs.numpy_to_image_msg(array, encoding)
    same_array(msgs.image_msg_to_numpy(msg), array, f"round trip {encoding}")
    return "round_trip"


def check_ros_camera_info(case: tuple[list[float], int, int]) -> str:
    from sensor_msgs.msg import CameraInfo

    from depth_sfm_ros import msgs

    from depth_sfm_ros.geometry.camera_model import resolve_input

    K, width, height = case
    msg = CameraInfo(width=width, height=height, k=[float(v) for v in K])

    def node_intrinsics():  # what FramePolicy does with a CameraInfo of a raw (image_raw) topic
        return resolve_input(msgs.camera_info_to_model(msg), rectified=False).intrinsics

    if not k_is_valid(K, width, height):
        return expect_clear_error(node_intrinsics, f"CameraInfo K={K}")
    got = node_intrinsics()
    if (got.fx, got.fy, got.cx, got.cy, got.width, got.height) != (K[0], K[4], K[2], K[5], width, height):
        raise Violation(f"CameraInfo K={K} {width}x{height} gave {got}")
    return "accepted"


@st.composite
def compressed_payloads(draw) -> tuple[bytes, str, np.ndarray | None]:
    """(bytes, format, exact image or None): PNG (lossless) / JPEG, cut short, or garbage."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    kind = draw(st.sampled_from(["png", "png_mono16", "jpeg", "garbage", "empty"]))
    if kind in ("garbage", "empty"):
        return (b"" if kind == "empty" else draw(st.binary(min_size=1, max_size=64))), kind, None
    import cv2

    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if kind == "png_mono16":
        image = rng.integers(0, 65535, (height, width), dtype=np.uint16)
        data = cv2.imencode(".png", image)[1].tobytes()
    else:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        data = cv2.imencode(".png" if kind == "png" else ".jpg", image)[1].tobytes()
    cut = draw(st.sampled_from([None, None, 0.3, 0.7, 0.95]))
    if cut is not None:
        return data[: max(1, int(len(data) * cut))], kind + "_cut", None
    return data, kind, image if kind.startswith("png") else None


def check_ros_compressed(case: tuple[bytes, str, np.ndarray | None]) -> str:
    from sensor_msgs.msg import CompressedImage

    from depth_sfm_ros import msgs

    data, kind, exact = case
    msg = CompressedImage(format=kind.split("_")[0], data=data)
    if kind in ("garbage", "empty") or kind.endswith("_cut"):
        try:
            image, encoding = msgs.compressed_msg_to_numpy(msg)
        except msgs.ImageDecodeError as exc:
            if not str(exc):
                raise Violation("ImageDecodeError without a message") from exc
            return "rejected"
        if kind in ("garbage", "empty"):
            raise Violation(f"{kind} bytes decoded to an image {image.shape}")
        # libjpeg decodes a cut JPEG with the missing rows grey and only a warning: a known limit of
        # OpenCV's imdecode, counted separately
        if encoding not in ("bgr8", "mono8", "mono16", "bgra8"):
            raise Violation(f"cut {kind} decoded with encoding {encoding!r}")
        return "partial_decode"
    image, encoding = msgs.compressed_msg_to_numpy(msg)
    if exact is not None:
        same_array(image, exact, f"{kind} decode")
        if encoding != ("mono16" if exact.dtype == np.uint16 else "bgr8"):
            raise Violation(f"{kind} decoded as {encoding}")
    elif image.shape != (*image.shape[:2], 3) or encoding != "bgr8":
        raise Violation(f"jpeg decoded to {image.shape} {encoding}")
    return "decoded"


def _rosbags_image(fields: dict) -> Any:
    from depth_sfm_ros.bag import rosbags_io

    return rosbags_io._types()[rosbags_io.MSG_IMAGE](
        header=rosbags_io.header(0, "cam"), height=fields["height"], width=fields["width"],
        encoding=fields["encoding"], is_bigendian=fields["is_bigendian"], step=fields["step"],
        data=np.frombuffer(fields["data"], dtype=np.uint8))


def check_bag_image_decode(fields: dict) -> str:
    from depth_sfm_ros.bag import rosbags_io

    msg = _rosbags_image(fields)
    # one decoder for the node and the bag tools: data must be exactly step * height bytes there too
    if not layout_is_valid(fields, strict_length=True):
        return expect_clear_error(lambda: rosbags_io.msg_to_image(msg), f"bag decode {fields}")
    want = reference_decode(fields["data"], fields["height"], fields["width"], fields["step"], fields["encoding"],
                            bool(fields["is_bigendian"]))
    same_array(rosbags_io.msg_to_image(msg), want, f"bag decode {fields['encoding']}")
    return "decoded"


def check_bag_image_encode(case: tuple[np.ndarray, str, bool]) -> str:
    from depth_sfm_ros.bag import rosbags_io

    array, encoding, valid = case
    # the encoder accepts (H, W, 1) for one-channel encodings (the generator never makes that form)
    if not valid and not (array.ndim == 3 and array.shape[2] == 1 and ENCODINGS[encoding][1] == 1
                          and array.dtype == ENCODINGS[encoding][0] and array.size):
        return expect_clear_error(lambda: rosbags_io.image_to_msg(array, encoding, 1, "cam"), f"bag encode {encoding}")
    msg = rosbags_io.image_to_msg(array, encoding, 1, "cam")
    want = array[:, :, 0] if array.ndim == 3 and ENCODINGS[encoding][1] == 1 else array
    same_array(rosbags_io.msg_to_image(msg), want, f"bag round trip {encoding}")
    return "round_trip"


@st.composite
def bag_camera_infos(draw) -> tuple[list[float], list[float], list[float], int, int]:
    """(K, P, D, width, height); P may be all zeros (K then counts)."""
    K, width, height = draw(camera_matrices())
    use_p = draw(st.booleans())
    P = [K[0], K[1], K[2], 0.0, K[3], K[4], K[5], 0.0, 0.0, 0.0, 1.0, 0.0] if use_p else [0.0] * 12
    D = [0.0] * 5 if draw(st.integers(0, 3)) else [draw(st.floats(-1, 1, allow_nan=False))] + [0.0] * 4
    return K, P, D, width, height


def check_bag_camera_info(case: tuple[list[float], list[float], list[float], int, int]) -> str:
    from depth_sfm_ros.bag import rosbags_io

    K, P, D, width, height = case
    msg = rosbags_io._types()[rosbags_io.MSG_CAMERA_INFO](
        header=rosbags_io.header(0, "cam"), height=height, width=width, distortion_model="plumb_bob",
        d=np.asarray(D, dtype=np.float64), k=np.asarray(K, dtype=np.float64), r=np.eye(3).reshape(-1),
        p=np.asarray(P, dtype=np.float64), binning_x=0, binning_y=0,
        roi=rosbags_io._types()["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                      do_rectify=False))
    from depth_sfm_ros.geometry.camera_model import resolve_input

    p_used = any(v != 0 for v in P)
    distorted = any(v != 0 for v in D)
    if not k_is_valid(K, width, height):
        return expect_clear_error(lambda: resolve_input(rosbags_io.msg_to_camera_model(msg), rectified=True),
                                  f"bag CameraInfo K={K} D={D}")
    model = rosbags_io.msg_to_camera_model(msg)
    expected = (K[0], K[4], K[2], K[5], width, height)  # P, when set, is [K | 0] here
    got = resolve_input(model, rectified=True).intrinsics  # image_rect: P (K when unset), no remap
    if (got.fx, got.fy, got.cx, got.cy, got.width, got.height) != expected:
        raise Violation(f"bag CameraInfo K={K} P={P} (rectified) gave {got}")
    if not distorted or p_used:  # raw: K without distortion; undistorted into P's geometry with it
        raw = resolve_input(model, rectified=False)
        got = raw.intrinsics
        if (got.fx, got.fy, got.cx, got.cy, got.width, got.height) != expected or raw.remaps != distorted:
            raise Violation(f"bag CameraInfo K={K} P={P} D={D} (raw) gave {got}, remaps {raw.remaps}")
        return "accepted"
    try:  # raw, distorted, P unset: OpenCV's optimal camera matrix, or a clear error for absurd coefficients
        raw = resolve_input(model, rectified=False)
    except ValueError as exc:
        if not str(exc).strip():
            raise Violation(f"bag CameraInfo K={K} D={D}: ValueError without a message") from exc
        return "rejected_distortion"
    i = raw.intrinsics
    if not (raw.remaps and i.fx > 0 and i.fy > 0 and (i.width, i.height) == (width, height)):
        raise Violation(f"bag CameraInfo K={K} D={D} (raw, P unset) gave {raw}")
    return "accepted_undistorted"


# --- the Pipeline -------------------------------------------------------------------------------

NET_H, NET_W = 32, 64  # the model card wants multiples of 32


@dataclass
class PipelineFixture:
    """One Pipeline over a tiny exported model (ONNX Runtime), shared by all cases."""

    pipeline: Any
    stamp_s: float = 0.0


_PIPELINE: PipelineFixture | None = None


def pipeline_fixture(work_dir: Path | None = None) -> PipelineFixture:
    """Export the tiny model once (torch) and build a Pipeline on it with ONNX Runtime."""
    global _PIPELINE
    if _PIPELINE is None:
        from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig
        from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir

        work_dir = Path(work_dir or tempfile.mkdtemp(prefix="fuzz_tiny_"))
        model = export_tiny_model_dir(work_dir / "tiny", height=NET_H, width=NET_W, net_width=4)
        config = PipelineConfig(model=str(model), backend="onnxruntime", threads=1, scale_mode="fixed",
                                fixed_scale=1.0, min_depth_m=0.1, max_depth_m=100.0)
        _PIPELINE = PipelineFixture(Pipeline(config))
    return _PIPELINE


@st.composite
def pipeline_cases(draw) -> dict:
    """An image (any dtype / shape / stride), an encoding, intrinsics and a stamp; ``valid`` says
    whether the Pipeline must accept it."""
    encoding = draw(st.sampled_from(PIPELINE_ENCODINGS) if draw(st.integers(0, 7))
                    else st.sampled_from(["32FC1", "yuv422", "RGB8", " Mono16", "rgb 8", ""]) | st.just(None) | st.just(3))
    known = pipeline_encoding_key(encoding)
    dtype, channels = ENCODINGS[known] if known else (np.uint8, 3)
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    shape: tuple[int, ...] = (height, width, channels) if channels > 1 or draw(st.booleans()) else (height, width)
    valid = known is not None
    wrong = draw(st.sampled_from([""] * 8 + ["dtype", "channels", "empty", "ndim"]))
    if wrong == "dtype":
        dtype = draw(st.sampled_from([d for d in (np.uint8, np.uint16, np.float32, np.int8, np.bool_)
                                      if d is not dtype]))
    elif wrong == "channels":
        shape = (height, width, draw(st.sampled_from([c for c in (2, 3, 4, 5) if c != channels])))
    elif wrong == "empty":
        shape = (0, width, channels)
    elif wrong == "ndim":
        shape = (height,)
    valid = valid and not wrong
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    image = rng.integers(0, 256, shape).astype(dtype)
    if draw(st.booleans()) and image.ndim >= 2 and width > 2:
        image = image[:, ::2]  # strided view
        width = image.shape[1]
    if draw(st.integers(0, 3)) == 0 and image.ndim >= 2 and image.shape[0] > 0:  # a ROS-like padded buffer view
        padded = np.zeros((image.shape[0], image.shape[1] + 3) + image.shape[2:], image.dtype)
        padded[:, : image.shape[1]] = image
        image = padded[:, : image.shape[1]]

    kind = draw(st.sampled_from(["none", "good", "good", "good", "matrix", "matrix", "junk_matrix", "other_size",
                                 "wrong_type"]))
    fx, fy = draw(st.floats(1.0, 500.0)), draw(st.floats(1.0, 500.0))
    K = np.array([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]])
    intrinsics: Any = None
    if kind in ("good", "other_size"):
        from depth_sfm_ros.geometry import Intrinsics

        intrinsics = Intrinsics(fx=fx, fy=fy, cx=width / 2, cy=height / 2, width=width + (kind == "other_size"),
                                height=height)
        valid = valid and kind == "good"
    elif kind == "matrix":
        intrinsics = K
    elif kind == "junk_matrix":
        K[draw(st.sampled_from([(0, 0), (1, 1), (0, 2), (1, 2), (0, 1)]))] = draw(special_floats)
        intrinsics = K
        valid = valid and k_is_valid(K.ravel().tolist(), width, height)
    elif kind == "wrong_type":
        intrinsics = draw(st.sampled_from(["fx=100", [100.0, 100.0, 10.0, 10.0], 3.0]))
        valid = False
    stamp = draw(st.sampled_from(["next"] * 6 + ["backwards", "same", "nan", "inf", "text"]))
    valid = valid and stamp not in ("nan", "inf", "text")
    return {"image": image, "encoding": encoding, "intrinsics": intrinsics, "stamp": stamp, "valid": valid}


def check_pipeline_input(case: dict) -> str:
    fixture = pipeline_fixture()
    pipeline = fixture.pipeline
    stamp = {"next": fixture.stamp_s + 0.1, "backwards": fixture.stamp_s - 5.0, "same": fixture.stamp_s,
             "nan": math.nan, "inf": math.inf, "text": "0.1"}[case["stamp"]]
    frame_before = pipeline.frame_index
    call = lambda: pipeline.process(case["image"], case["encoding"], stamp, case["intrinsics"])  # noqa: E731
    if not case["valid"]:
        outcome = expect_clear_error(call, f"Pipeline.process({case['image'].dtype} {case['image'].shape}, "
                                           f"{case['encoding']!r}, stamp {case['stamp']}, {case['intrinsics']!r})")
        if pipeline.frame_index != frame_before:
            raise Violation("a refused frame advanced the Pipeline's frame counter")
        return outcome
    result = call()
    fixture.stamp_s = float(stamp)
    depth = result.depth_m
    if depth.shape != (NET_H, NET_W) or depth.dtype != np.float32:
        raise Violation(f"depth {depth.dtype} {depth.shape}, expected float32 {(NET_H, NET_W)}")
    known = depth[np.isfinite(depth)]
    if np.isinf(depth).any() or np.any((known < 0.1) | (known > 100.0)):
        raise Violation("depth outside [min_depth_m, max_depth_m] and not NaN")
    if not np.all(np.isfinite(result.T_odom_cam.matrix)):
        raise Violation("odometry pose has NaN/Inf entries")
    if case["stamp"] in ("backwards", "same") and frame_before > 0 and not result.reset:
        raise Violation("a stamp that did not move forward did not reset odometry")
    return "reset" if result.reset else "processed"


# --- registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Property:
    name: str
    strategy: Any
    check: Callable[[Any], str]
    weight: float = 1.0  # share of --examples (the Pipeline runs a network per case)


PROPERTIES = (
    Property("ros_image_decode", raw_image_fields(), check_ros_image_decode),
    Property("ros_image_encode", image_arrays(), check_ros_image_encode),
    Property("ros_camera_info", camera_matrices(), check_ros_camera_info),
    Property("ros_compressed", compressed_payloads(), check_ros_compressed, 0.5),
    Property("bag_image_decode", raw_image_fields(), check_bag_image_decode),
    Property("bag_image_encode", image_arrays(), check_bag_image_encode),
    Property("bag_camera_info", bag_camera_infos(), check_bag_camera_info),
    Property("pipeline_input", pipeline_cases(), check_pipeline_input),
)
PROPERTIES_BY_NAME = {p.name: p for p in PROPERTIES}


def run_property(prop: Property, examples: int, stop_on_violation: bool) -> dict:
    """Run ``examples`` generated cases; returns outcome counts and the first violations."""
    outcomes: collections.Counter[str] = collections.Counter()
    violations: list[str] = []

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(prop.strategy)
    def body(case: Any) -> None:
        try:
            outcomes[prop.check(case)] += 1
        except Violation as exc:
            outcomes["VIOLATION"] += 1
            if len(violations) < 5:
                violations.append(str(exc)[:300])
            if stop_on_violation:
                raise
        except Exception as exc:  # noqa: BLE001 - anything else is a crash of the code under test
            outcomes[f"CRASH {type(exc).__name__}"] += 1
            if len(violations) < 5:
                violations.append(f"{type(exc).__name__}: {str(exc)[:300]}")
            if stop_on_violation:
                raise

    start = time.perf_counter()
    if prop.name == "pipeline_input":
        pipeline_fixture()  # export the model before the clock of the first example starts
    body()
    return {"property": prop.name, "cases": sum(outcomes.values()), "outcomes": dict(outcomes),
            "violations": violations, "seconds": round(time.perf_counter() - start, 2)}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (C libraries' messages) to /dev/null for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1400, help="cases per property (x its weight)")
    parser.add_argument("--only", default="", help="comma-separated property names")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be >= 1")
    names = [n for n in args.only.split(",") if n] or list(PROPERTIES_BY_NAME)
    unknown = [n for n in names if n not in PROPERTIES_BY_NAME]
    if unknown:
        parser.error(f"unknown properties {unknown}; known: {list(PROPERTIES_BY_NAME)}")
    with quiet_stderr():  # libpng / OpenCV print a line per cut PNG
        rows = [run_property(PROPERTIES_BY_NAME[n], max(1, int(args.examples * PROPERTIES_BY_NAME[n].weight)),
                             False) for n in names]
    total = sum(r["cases"] for r in rows)
    bad = sum(n for r in rows for k, n in r["outcomes"].items() if k == "VIOLATION" or k.startswith("CRASH"))
    print(f"{'property':<18} {'cases':>6} {'seconds':>8}  outcomes")
    for r in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
        print(f"{r['property']:<18} {r['cases']:>6} {r['seconds']:>8.1f}  {outcomes}")
        for v in r["violations"]:
            print(f"    ! {v}")
    print(f"{'total':<18} {total:>6}           violations + crashes: {bad}")
    print("RESULT " + json.dumps({"bench": "fuzz_inputs", "cases": total, "violations": bad, "properties": rows}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
