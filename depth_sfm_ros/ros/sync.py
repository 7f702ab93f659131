"""Hand-over between the subscription callbacks and the inference worker (ROS-free).

- :class:`LatestSlot`: the callbacks store the newest frame, the worker takes it; a frame
  overwritten before the worker took it is dropped (counted), so nothing queues.
- :class:`CameraInfoCache`: recent CameraInfo calibrations (camera models) by stamp, matched to an
  image stamp within a tolerance.
- :class:`SpeedCache`: recent speeds of an external odometry source (wheel odometry), matched to
  an image stamp within a tolerance (``scale_mode: external``).

Size changes and stamps going backwards are the Pipeline's to notice (``FrameResult.reset_code``); what a
camera model means for an image (size, undistortion) is :mod:`depth_sfm_ros.geometry.camera_model`'s.

Stamps are integer nanoseconds (exact copies of ``builtin_interfaces/Time``).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from depth_sfm_ros.geometry.camera_model import CameraModel
from depth_sfm_ros.msgs.image import ImageLayout

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-element mailbox: ``put`` replaces, ``take`` waits for and removes the item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced an item the worker never took (a dropped frame)."""
        with self._cond:
            if self._closed:
                return False
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item, or None after ``timeout_s`` or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout=timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the worker for shutdown; later ``put``s are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass(frozen=True)
class InfoMatch:
    """Result of :meth:`CameraInfoCache.lookup`: ``camera`` (the cached calibration) and ``status``:
    ``synced`` (within the tolerance), ``constant`` (none within the tolerance, but every cached CameraInfo
    has the same calibration: the newest, used without waiting), ``unsynced`` (the newest CameraInfo, none
    within the tolerance), ``none`` (never received)."""

    camera: CameraModel | None
    status: str
    offset_s: float = 0.0


class CameraInfoCache:
    """The last ``capacity`` CameraInfo calibrations by stamp (thread-safe). Items are compared with ``==``
    (:class:`~depth_sfm_ros.geometry.camera_model.CameraModel` compares every field)."""

    CONSTANT_AFTER = 5  # identical CameraInfos before the camera counts as fixed (see lookup)

    def __init__(self, capacity: int = 30) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._lock = threading.Condition()
        self._items: collections.deque[tuple[int, CameraModel]] = collections.deque(maxlen=capacity)

    def add(self, stamp_ns: int, camera: CameraModel) -> None:
        with self._lock:
            self._items.append((int(stamp_ns), camera))
            self._lock.notify_all()

    @property
    def received(self) -> bool:
        """True once any CameraInfo was added."""
        with self._lock:
            return bool(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def lookup(self, stamp_ns: int, tolerance_s: float, wait_s: float = 0.0) -> InfoMatch:
        """The CameraInfo closest in stamp to ``stamp_ns`` if within ``tolerance_s``.

        Image and CameraInfo travel on separate topics and may arrive in either order (a large image
        can overtake the small CameraInfo sent before it). When every cached CameraInfo holds the same
        calibration (a fixed camera: almost always), the newest is returned at once (``constant``) instead
        of waiting for what is almost surely the same calibration again. The price: the first frames after
        a change of calibration (zoom) whose own CameraInfo is late get the old one; the first differing
        CameraInfo ends the shortcut until the cache is uniform again. Otherwise (first messages,
        calibration changing) it waits up to ``wait_s`` for the matching one, then falls back to the
        newest (``unsynced``) or nothing (``none``)."""
        with self._lock:
            match = self._match(stamp_ns, tolerance_s)
            if match.status != "unsynced":
                return match
            if self._calibration_constant():
                return InfoMatch(match.camera, "constant", match.offset_s)
            if wait_s > 0:
                self._lock.wait_for(lambda: self._match(stamp_ns, tolerance_s).status == "synced", timeout=wait_s)
            return self._match(stamp_ns, tolerance_s)

    def _calibration_constant(self) -> bool:
        """True when at least ``CONSTANT_AFTER`` CameraInfos (or a full cache) are cached and all agree;
        call with the lock held."""
        if len(self._items) < min(self.CONSTANT_AFTER, self._items.maxlen):
            return False
        first = self._items[0][1]
        return all(camera == first for _, camera in self._items)

    def _match(self, stamp_ns: int, tolerance_s: float) -> InfoMatch:
        """:meth:`lookup` without waiting; call with the lock held."""
        if not self._items:
            return InfoMatch(None, "none")
        best_stamp, best = min(self._items, key=lambda item: abs(item[0] - stamp_ns))
        offset_s = abs(best_stamp - stamp_ns) * 1e-9
        if offset_s <= tolerance_s:
            return InfoMatch(best, "synced", offset_s)
        newest_stamp, newest = max(self._items, key=lambda item: item[0])
        return InfoMatch(newest, "unsynced", abs(newest_stamp - stamp_ns) * 1e-9)


class SpeedCache:
    """The last ``capacity`` speeds (m/s) of an external odometry source by stamp (thread-safe).

    >>> cache = SpeedCache()
    >>> cache.add(1_000_000_000, 2.0); cache.add(1_100_000_000, 2.5)
    >>> cache.speed_at(1_090_000_000, tolerance_s=0.05)
    2.5
    >>> cache.speed_at(2_000_000_000, tolerance_s=0.05) is None
    True
    """

    def __init__(self, capacity: int = 200) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._lock = threading.Condition()
        self._items: collections.deque[tuple[int, float]] = collections.deque(maxlen=capacity)

    def add(self, stamp_ns: int, speed_mps: float) -> None:
        """Store a speed; raises ValueError for a NaN, infinite or negative one (nothing is stored)."""
        speed_mps = float(speed_mps)
        if not (speed_mps >= 0.0 and speed_mps != float("inf")):
            raise ValueError(f"speed must be finite and >= 0 m/s, got {speed_mps!r}")
        with self._lock:
            self._items.append((int(stamp_ns), speed_mps))
            self._lock.notify_all()

    def speed_at(self, stamp_ns: int, tolerance_s: float, wait_s: float = 0.0) -> float | None:
        """The speed whose stamp is nearest to ``stamp_ns`` if within ``tolerance_s``, else None. When none
        is, and none newer than the image has arrived yet (odometry and image travel on separate topics),
        it waits up to ``wait_s`` for one."""
        with self._lock:
            if wait_s > 0 and self._nearest(stamp_ns, tolerance_s) is None:
                self._lock.wait_for(lambda: self._nearest(stamp_ns, tolerance_s) is not None
                                    or (bool(self._items) and self._items[-1][0] > stamp_ns), timeout=wait_s)
            return self._nearest(stamp_ns, tolerance_s)

    def _nearest(self, stamp_ns: int, tolerance_s: float) -> float | None:
        """:meth:`speed_at` without waiting; call with the lock held."""
        if not self._items:
            return None
        best_stamp, speed = min(self._items, key=lambda item: abs(item[0] - stamp_ns))
        return speed if abs(best_stamp - stamp_ns) * 1e-9 <= tolerance_s else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class InputFrame:
    """What a callback hands to the worker: the undecoded message, its header stamp, its arrival time
    (``time.monotonic`` seconds) and, for a raw Image, the layout the callback checked
    (:class:`~depth_sfm_ros.msgs.image.ImageLayout`; None for a compressed image)."""

    msg: Any
    compressed: bool
    stamp_ns: int
    received_monotonic_s: float
    layout: ImageLayout | None = None
