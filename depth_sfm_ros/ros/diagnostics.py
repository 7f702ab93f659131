"""Thread-safe run-time statistics of the node and their /diagnostics key-value form (ROS-free).

The subscription callbacks and the inference worker run on different threads; every method
takes the one lock. Times are wall-clock seconds from ``time.monotonic`` unless named otherwise.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Callable

import numpy as np

from depth_sfm_ros.runtime.scale import REFUSAL_REASONS

# Kinds of bad input, each with a counter (all reported, zeros included, so tools can rely on them).
BAD_INPUT_KINDS = (
    "unsupported_encoding",  # encoding the Pipeline cannot read (e.g. 32FC1, yuv422)
    "empty",                 # zero width / height / data
    "truncated",             # len(data) != step * height
    "bad_step",              # step smaller than one row
    "decode_failed",         # compressed image OpenCV cannot decode
    "size_change",           # image size differs from the previous frame (odometry restarts)
    "stamp_backwards",       # stamp older than the previous frame (odometry reset)
    "missing_camera_info",   # no CameraInfo ever received: fallback intrinsics used
    "camera_info_unsynced",  # CameraInfo received, none within the stamp tolerance: latest one used
    "bad_camera_info",       # CameraInfo with an unusable calibration (K, size, coefficient count, ...)
    "unsupported_camera_model",  # raw input whose distortion model cannot be undistorted: no depth for it
    "missing_frame_id",      # empty header.frame_id and no camera_frame parameter: frame skipped
    "pipeline_error",        # the Pipeline raised on a frame
    "bad_external_odometry",  # scale_mode external: an Odometry whose speed is NaN / infinite: ignored
    "no_external_speed",     # scale_mode external: no Odometry within the tolerance of a frame: scale kept
)


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds."""

    def __init__(self, window_s: float = 5.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate_hz(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class NodeStats:
    """Counters, rates and latencies of one node."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, latency_window: int = 200) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.bad_input = {kind: 0 for kind in BAD_INPUT_KINDS}
        self.frames_received = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.frames_camera_info_late = 0  # processed with the fixed camera's intrinsics before their own CameraInfo
        self.odometry_resets = 0
        self._input_rate = RateMeter()
        self._output_rate = RateMeter()
        self._latency_ms: collections.deque[float] = collections.deque(maxlen=latency_window)
        self._timings_ms: dict[str, float] = {}
        self._outputs: tuple[str, ...] = ()
        self.last_scale = float("nan")
        self.scale_valid = False
        self.scale_status = "no_scale_yet"
        self.scale_assumption = ""
        self.scale_refusals = {reason: 0 for reason in REFUSAL_REASONS}
        self.still_frames = 0
        self.motion_state = ""
        self.motion_px = float("nan")
        self.last_input_time: float | None = None

    def count_bad(self, kind: str) -> int:
        """Increment the counter of ``kind`` (one of :data:`BAD_INPUT_KINDS`); returns the new count."""
        if kind not in self.bad_input:
            raise KeyError(f"unknown bad-input kind {kind!r}; known: {BAD_INPUT_KINDS}")
        with self._lock:
            self.bad_input[kind] += 1
            return self.bad_input[kind]

    def frame_received(self) -> None:
        with self._lock:
            now = self._clock()
            self.frames_received += 1
            self.last_input_time = now
            self._input_rate.tick(now)

    def frame_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.frames_dropped += count

    def camera_info_late(self) -> None:
        with self._lock:
            self.frames_camera_info_late += 1

    def frame_processed(self, latency_ms: float, timings_ms: dict[str, float], scale: float, scale_valid: bool,
                        reset: bool, outputs: tuple[str, ...] = (), motion_state: str = "",
                        motion_px: float = math.nan, scale_state: Any = None) -> None:
        """One published frame: ``latency_ms`` from message arrival to publishing; ``outputs``: the
        topics it went to (outputs without a subscriber are skipped); ``motion_state`` / ``motion_px`` /
        ``scale_state``: the FrameResult's (still-camera test, :class:`~depth_sfm_ros.runtime.scale.ScaleState`)."""
        with self._lock:
            self.motion_state = str(motion_state)
            self.still_frames += int(motion_state == "still")
            self.motion_px = float(motion_px)
            if scale_state is not None:
                self.scale_status = str(scale_state.status)
                self.scale_assumption = str(scale_state.assumption)
                self.scale_refusals.update(scale_state.refusals_by_reason)
            self._outputs = tuple(outputs)
            self.frames_processed += 1
            self.odometry_resets += int(bool(reset))
            self._output_rate.tick(self._clock())
            self._latency_ms.append(float(latency_ms))
            self._timings_ms = {str(k): float(v) for k, v in timings_ms.items()}
            self.last_scale = float(scale)
            self.scale_valid = bool(scale_valid)

    def key_values(self) -> list[tuple[str, str]]:
        """Snapshot as (key, value) strings, the form of ``diagnostic_msgs/KeyValue``."""
        with self._lock:
            now = self._clock()
            latencies = np.asarray(self._latency_ms, dtype=np.float64)
            values: list[tuple[str, str]] = [
                ("input_rate_hz", f"{self._input_rate.rate_hz(now):.2f}"),
                ("processing_rate_hz", f"{self._output_rate.rate_hz(now):.2f}"),
                ("latency_ms_p50", f"{np.percentile(latencies, 50):.1f}" if latencies.size else "nan"),
                ("latency_ms_max", f"{latencies.max():.1f}" if latencies.size else "nan"),
                ("frames_received", str(self.frames_received)),
                ("frames_processed", str(self.frames_processed)),
                ("frames_dropped", str(self.frames_dropped)),
                ("frames_camera_info_late", str(self.frames_camera_info_late)),
                ("odometry_resets", str(self.odometry_resets)),
                ("scale", f"{self.last_scale:.6g}"),
                ("scale_valid", str(self.scale_valid).lower()),
                ("scale_status", self.scale_status),
                ("scale_assumption", self.scale_assumption),
                ("scale_refusals", str(sum(self.scale_refusals.values()))),
                ("still_frames", str(self.still_frames)),
                ("motion_state", self.motion_state),
                ("motion_px", f"{self.motion_px:.3f}"),
                ("outputs_last_frame", ",".join(self._outputs)),
            ]
            values += [(f"scale_refusals.{reason}", str(count)) for reason, count in self.scale_refusals.items()]
            values += [(f"bad_input.{kind}", str(count)) for kind, count in self.bad_input.items()]
            values += [(f"timing_ms.{name}", f"{ms:.2f}") for name, ms in sorted(self._timings_ms.items())]
            return values

    def level(self, period_s: float) -> tuple[int, str]:
        """(level, message): 0 OK, 1 WARN (no input for 3 periods, or nothing processed yet while
        input arrives). Levels follow ``diagnostic_msgs/DiagnosticStatus``."""
        with self._lock:
            now = self._clock()
            if self.last_input_time is None:
                return 1, "no input image yet"
            if now - self.last_input_time > 3 * period_s:
                return 1, f"no input image for {now - self.last_input_time:.1f} s"
            if self.frames_processed == 0:
                return 1, "receiving images, none processed yet"
            return 0, "running"


class LogThrottle:
    """Allow one log line per key every ``period_s`` seconds (rclpy's ``throttle_duration_sec``
    throttles per call site; the node logs every kind of bad input from one place)."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if period_s < 0:
            raise ValueError(f"period_s must be >= 0, got {period_s}")
        self.period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                return False
            self._last[key] = now
            return True


def adaptation_diagnostics(status: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]]]:
    """(level, message, key values) of online adaptation from ``OnlineAdapter.status()``: ERROR (2) when it
    stopped on a bad loss, an exception or failed swaps (the node keeps running on the weights it has), WARN (1)
    while the last swap into the backend (e.g. an ONNX export) failed, else OK (0)."""

    def text(value: Any, fmt: str = "{:.5f}") -> str:
        return "nan" if value is None else fmt.format(value)

    frames = status.get("frames", {})
    values = [
        ("adapt_state", str(status["state"])), ("adapt_steps", str(status["steps"])),
        ("adapt_accepted", str(status["accepted"])), ("adapt_rollbacks", str(status["rollbacks"])),
        ("adapt_swaps", str(status["swaps"])), ("adapt_last_loss", text(status["last_loss"])),
        ("adapt_heldout_start", text(status["heldout_start"])), ("adapt_heldout_best", text(status["heldout_best"])),
        ("adapt_heldout_change", text(status["heldout_change"], "{:+.2%}")),
        ("adapt_last_swap_age_s", text(status["last_swap_age_s"], "{:.1f}")),
        ("adapt_buffer", f"{status['train_triplets']} training + {status['heldout_triplets']} held-out triplets"),
        ("adapt_frames_skipped", ", ".join(f"{k} {frames.get(k, 0)}" for k in ("still", "flat", "invalid"))),
        ("adapt_last_save", status.get("last_save") or "none"),
        ("adapt_swap_failures", str(status.get("swap_failures", 0))),
        ("adapt_last_swap_error", status.get("last_swap_error") or "none"),
        ("adapt_weights_in_use", str(status.get("weights_in_use"))),
        ("adapt_replay", str(status.get("replay", "off"))),
        ("adapt_replay_used", str(status.get("replay_used", 0))),
    ]
    message = str(status["message"])
    if status["state"] == "error":
        return 2, message, values
    if status.get("swap_failing"):
        return 1, f"{message}; the last swap failed (the backend keeps its weights): {status['last_swap_error']}", \
            values
    return 0, message, values
