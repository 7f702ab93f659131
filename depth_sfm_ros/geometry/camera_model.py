"""Real camera models: from a CameraInfo's calibration to the pinhole images the networks see.

The ONE place that decides which intrinsics an image has and whether it must be undistorted first, for the
ROS node, the bag tools and the training datasets (so a number measured offline is the node's number).

Conventions (those of :mod:`depth_sfm_ros.geometry.camera`, ROS CameraInfo and OpenCV):

* pixel (u, v) is the centre of column u, row v; an image of W x H spans [-0.5, W - 0.5] x [-0.5, H - 0.5];
* ``K`` (3, 3) is the camera matrix of the *raw* (distorted) image, ``D`` (n,) its distortion coefficients in
  the order of ``distortion_model``, ``R`` (3, 3) the rectification rotation (identity for a monocular
  camera), ``P`` (3, 4) the projection matrix of the *rectified* image (all zeros when unset); focal
  lengths and principal points in pixels, float64;
* the optical frame is x right, y down, z forward; rectified images are distortion-free pinhole images.

Distortion models (names as in ROS ``sensor_msgs/distortion_models``):

=====================  ===============================================  ==========================
``plumb_bob``          OpenCV radial-tangential k1, k2, p1, p2[, k3]     4, 5, 8, 12 or 14 numbers
``rational_polynomial`` k1, k2, p1, p2, k3, k4, k5, k6 (OpenCV's order)  4, 5, 8, 12 or 14 numbers
``equidistant``        OpenCV fisheye (Kannala-Brandt) k1, k2, k3, k4    exactly 4 numbers
=====================  ===============================================  ==========================

Any other name raises :class:`UnsupportedCameraModel` where the distortion matters (raw images). An empty
name is accepted only with all-zero (or no) coefficients. Note that ``equidistant`` with all-zero
coefficients is still a fisheye projection (r = f * theta), not a pinhole one, so it is always undistorted.

Policy (:func:`resolve_input`):

1. rectified input (``image_rect*`` topics, already remapped by ``image_proc``): the pixels are in the
   geometry of ``P``, so the intrinsics are ``P[:3, :3]``; when ``P`` is unset (all zeros) ``K`` is used,
   with a reason saying so. No remap.
2. raw input whose distortion is zero (``plumb_bob`` / ``rational_polynomial`` / "" with all-zero ``D``):
   the intrinsics are ``K``. No remap.
3. raw input with distortion: an :class:`Undistorter` remaps every image once into a pinhole geometry whose
   camera matrix is ``P[:3, :3]`` when ``P`` is set (what ``image_proc``'s ``image_rect`` would give, ``R``
   applied as image_proc does), else OpenCV's optimal matrix with ``alpha`` = 0 (fisheye: balance 0), so
   that the output has no black border. The remap tables are built once per (model, K, D, R, new K, size)
   and cached (:func:`map_cache_info`).

The output of a depth network fed with these images is in that rectified geometry:
:func:`rectified_camera_info_fields` gives the CameraInfo that matches it (K = the rectified matrix scaled to
the depth image, D = 0 ``plumb_bob``, R = I, P = [K | 0]).

numpy and OpenCV only (no torch, no rclpy): the runtime, the node and the datasets use it.
"""
from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from .camera import Intrinsics

__all__ = [
    "SUPPORTED_DISTORTION_MODELS", "PINHOLE_COEFFICIENT_COUNTS", "FISHEYE_COEFFICIENT_COUNT",
    "KALIBR_DISTORTION_MODELS", "UnsupportedCameraModel", "CameraModel", "Undistorter", "InputGeometry",
    "CameraInputResolver", "resolve_input", "topic_is_rectified", "rectified_camera_info_fields",
    "map_cache_info", "clear_map_cache",
]

SUPPORTED_DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
PINHOLE_COEFFICIENT_COUNTS = (4, 5, 8, 12, 14)  # what cv2.initUndistortRectifyMap accepts
FISHEYE_COEFFICIENT_COUNT = 4  # cv2.fisheye: k1..k4
# Kalibr / ASL (EuRoC, TUM-VI) names -> ROS names; Kalibr's "equidistant" is OpenCV's fisheye model.
KALIBR_DISTORTION_MODELS = {"radial-tangential": "plumb_bob", "radtan": "plumb_bob", "plumb_bob": "plumb_bob",
                            "equidistant": "equidistant", "none": ""}

_MAP_CACHE_SIZE = 4  # a 1920x1080 pair of float maps is ~16 MB; a node sees one camera, a dataset a few
_MAP_CACHE: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
_MAP_LOCK = threading.Lock()
_MAP_STATS = {"builds": 0, "hits": 0}
_CV2_REMAP_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64)


class UnsupportedCameraModel(ValueError):
    """A distortion model (or a model / coefficient combination) this module cannot undistort."""


def _supported_text() -> str:
    return ("supported distortion models: plumb_bob (4, 5, 8, 12 or 14 coefficients), rational_polynomial "
            "(the same counts, usually 8) and equidistant (OpenCV fisheye / Kannala-Brandt, 4 coefficients); "
            "rectify the images upstream (image_proc) and subscribe to image_rect for any other model")


def _as_matrix(value: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    """``value`` as a read-only float64 array of ``shape`` (from nested lists or ROS's flat 9 / 12 numbers)."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {shape[0]}x{shape[1]} numbers, got {value!r}") from None
    if array.size != shape[0] * shape[1]:
        raise ValueError(f"{name} must have {shape[0] * shape[1]} numbers ({shape[0]}x{shape[1]}), got shape "
                         f"{array.shape}")
    array = array.reshape(shape)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN/Inf entries: {array.ravel().tolist()}")
    array.setflags(write=False)
    return array


def _check_pinhole_matrix(M: np.ndarray, name: str) -> None:
    """Positive focal lengths and a bottom row [0, 0, 1] (the top-left 3x3 of ``M``)."""
    if M[0, 0] <= 0 or M[1, 1] <= 0:
        raise ValueError(f"{name} focal lengths must be > 0, got fx={M[0, 0]:g}, fy={M[1, 1]:g} "
                         f"({name} = {M.ravel().tolist()}; an unset / uncalibrated camera?)")
    if not np.allclose(M[2, :3], [0.0, 0.0, 1.0]):
        raise ValueError(f"{name} bottom row must be [0, 0, 1], got {M[2, :3].tolist()}")


def canonical_model_name(name: str) -> str:
    """The ROS distortion model name, lower-case and stripped (``"Plumb_Bob "`` -> ``"plumb_bob"``).

    >>> canonical_model_name(" Equidistant")
    'equidistant'
    """
    if not isinstance(name, str):
        raise TypeError(f"distortion_model must be a string, got {type(name).__name__}")
    return name.strip().lower()


@dataclass(frozen=True, eq=False)
class CameraModel:
    """The calibration of one camera, as a CameraInfo carries it (see the module docstring for the frames).

    width / height: the image size in pixels the calibration is for.
    K: (3, 3) float64 raw camera matrix.  D: (n,) float64 coefficients of ``distortion_model``.
    distortion_model: the ROS name (canonicalised: stripped, lower case; "" when unset).
    P: (3, 4) float64 rectified projection, or None when unset (an all-zero P is stored as None).
    R: (3, 3) float64 rectification rotation (identity when unset or all zeros, as uncalibrated drivers send).
    frame_id: the camera's optical frame ("" when unknown).

    Arrays are read-only copies; two models are equal when every field is equal.

    >>> m = CameraModel.from_fields(640, 480, K=[500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], D=[0.1, 0, 0, 0, 0],
    ...                             distortion_model="plumb_bob")
    >>> m.has_distortion, m.P is None, float(m.scaled(320, 240).K[0, 2])
    (True, True, 159.5)
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str = ""
    P: np.ndarray | None = None
    R: np.ndarray | None = None
    frame_id: str = ""

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"camera image size must be positive integers, got {self.width!r}x{self.height!r}"
                                 " (a CameraInfo of 0x0 is an uncalibrated camera)")
            object.__setattr__(self, name, int(value))
        K = _as_matrix(self.K, (3, 3), "K")
        _check_pinhole_matrix(K, "K")
        try:
            D = np.array([] if self.D is None else self.D, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"D must be a sequence of numbers, got {self.D!r}") from None
        if not np.all(np.isfinite(D)):
            raise ValueError(f"D has NaN/Inf entries: {D.tolist()}")
        D.setflags(write=False)
        P = None
        if self.P is not None:
            P = _as_matrix(self.P, (3, 4), "P")
            if not np.any(P):
                P = None
            else:
                _check_pinhole_matrix(P, "P")
        R = np.eye(3)
        if self.R is not None:
            R = np.array(_as_matrix(self.R, (3, 3), "R"))
            if not np.any(R):
                R = np.eye(3)
            elif not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
                raise ValueError(f"R must be a rotation matrix (orthonormal, det +1), got {R.ravel().tolist()}")
        R.setflags(write=False)
        model = canonical_model_name(self.distortion_model)
        if not isinstance(self.frame_id, str):
            raise TypeError(f"frame_id must be a string, got {type(self.frame_id).__name__}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "distortion_model", model)
        if model in SUPPORTED_DISTORTION_MODELS:
            self._check_coefficient_count()

    # ------------------------------------------------------------------------------------ building
    @classmethod
    def from_fields(cls, width: int, height: int, K: Any, D: Any = (), distortion_model: str = "",
                    P: Any = None, R: Any = None, frame_id: str = "") -> "CameraModel":
        """From plain CameraInfo fields: ``K`` 9 numbers or 3x3, ``D`` any length, ``P`` 12 numbers or 3x4
        (None / all zeros = unset), ``R`` 9 numbers or 3x3 (None / all zeros = identity)."""
        return cls(width=int(width), height=int(height), K=K, D=D, distortion_model=distortion_model or "",
                   P=P, R=R, frame_id=frame_id or "")

    @classmethod
    def from_camera_info_fields(cls, fields: Any) -> "CameraModel":
        """From any object with the attributes ``width``, ``height``, ``K``, ``D``, ``distortion_model`` and
        optionally ``P``, ``R``, ``frame_id`` (e.g. ``depth_sfm_ros.msgs.camera_info.CameraInfoFields``)."""
        return cls.from_fields(fields.width, fields.height, fields.K, getattr(fields, "D", ()),
                               getattr(fields, "distortion_model", ""), getattr(fields, "P", None),
                               getattr(fields, "R", None), getattr(fields, "frame_id", ""))

    @classmethod
    def from_intrinsics(cls, intrinsics: Intrinsics, D: Sequence[float] = (), distortion_model: str = "plumb_bob",
                        frame_id: str = "") -> "CameraModel":
        """A raw camera with pinhole part ``intrinsics`` and coefficients ``D`` (datasets' calibration files)."""
        if not isinstance(intrinsics, Intrinsics):
            raise TypeError(f"intrinsics must be an Intrinsics, got {type(intrinsics).__name__}")
        return cls.from_fields(intrinsics.width, intrinsics.height, intrinsics.K, D, distortion_model,
                               frame_id=frame_id)

    def _check_coefficient_count(self) -> None:
        n = self.D.size
        if self.distortion_model == "equidistant":
            if n != FISHEYE_COEFFICIENT_COUNT:
                raise ValueError(f"equidistant (fisheye) distortion needs exactly 4 finite coefficients k1..k4, "
                                 f"got {n}: {self.D.tolist()}")
        elif n and n not in PINHOLE_COEFFICIENT_COUNTS:
            raise ValueError(f"{self.distortion_model} distortion needs 4, 5 or 8 finite coefficients (or 12 / "
                             f"14: OpenCV's thin-prism and tilt terms), got {n}: {self.D.tolist()}")

    # ---------------------------------------------------------------------------------- properties
    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    @property
    def has_projection(self) -> bool:
        """Whether P is set (a calibrated rectified geometry)."""
        return self.P is not None

    @property
    def has_distortion(self) -> bool:
        """Whether raw images differ from a pinhole image with K: any non-zero coefficient, or the
        equidistant (fisheye) model whatever its coefficients. Unknown names with all-zero D count as
        distorted (their parameters may live outside D)."""
        model = self.distortion_model
        if model == "equidistant":
            return True
        if model and model not in SUPPORTED_DISTORTION_MODELS:
            return True
        return bool(np.any(self.D != 0.0))

    @property
    def is_supported(self) -> bool:
        """Whether raw images of this camera can be undistorted here (or need no undistortion)."""
        try:
            self.require_supported()
        except UnsupportedCameraModel:
            return False
        return True

    def require_supported(self) -> None:
        """Raise :class:`UnsupportedCameraModel` when raw images of this camera cannot be undistorted here."""
        model = self.distortion_model
        if model in SUPPORTED_DISTORTION_MODELS:
            return
        if model:
            raise UnsupportedCameraModel(f"distortion model {model!r} is not supported; {_supported_text()}")
        if np.any(self.D != 0.0):
            raise UnsupportedCameraModel(f"distortion coefficients {self.D.tolist()} without a distortion model "
                                         f"name; {_supported_text()}")

    def intrinsics_K(self) -> Intrinsics:
        """The raw camera's pinhole part (K) as :class:`Intrinsics` at (width, height)."""
        return Intrinsics.from_matrix(self.K, self.width, self.height)

    def intrinsics_P(self) -> Intrinsics:
        """The rectified camera (``P[:3, :3]``) as :class:`Intrinsics`; ValueError when P is unset."""
        if self.P is None:
            raise ValueError("P is unset (all zeros): no rectified camera matrix")
        return Intrinsics.from_matrix(self.P[:, :3], self.width, self.height)

    def scaled(self, width: int, height: int) -> "CameraModel":
        """The same camera for images resized (or binned) to ``width`` x ``height``: K and P follow the image
        as :meth:`Intrinsics.scaled` does (pixel centres), D and R are unchanged (they act on normalised
        coordinates). P's translation column (stereo baseline * fx) is scaled with fx."""
        sx, sy = width / self.width, height / self.height
        S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        P = None if self.P is None else S @ self.P
        return CameraModel(width=int(width), height=int(height), K=S @ self.K, D=self.D,
                           distortion_model=self.distortion_model, P=P, R=self.R, frame_id=self.frame_id)

    @property
    def key(self) -> tuple:
        """A hashable identity of the calibration (every field)."""
        return (self.width, self.height, self.distortion_model, self.K.tobytes(), self.D.tobytes(),
                None if self.P is None else self.P.tobytes(), self.R.tobytes(), self.frame_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CameraModel) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return (f"CameraModel({self.width}x{self.height}, model={self.distortion_model!r}, "
                f"K=[fx {self.K[0, 0]:g}, fy {self.K[1, 1]:g}, cx {self.K[0, 2]:g}, cy {self.K[1, 2]:g}], "
                f"D={self.D.tolist()}, P={'unset' if self.P is None else 'set'}, frame_id={self.frame_id!r})")


# ------------------------------------------------------------------------------------ remap tables
def map_cache_info() -> dict[str, int]:
    """``builds`` (remap table pairs built by this process), ``hits`` (served from the cache), ``entries``."""
    with _MAP_LOCK:
        return {**_MAP_STATS, "entries": len(_MAP_CACHE)}


def clear_map_cache() -> None:
    """Forget every cached remap table and reset the counters (tests; a camera re-calibrated in place)."""
    with _MAP_LOCK:
        _MAP_CACHE.clear()
        _MAP_STATS.update(builds=0, hits=0)


def _build_maps(model: str, K: np.ndarray, D: np.ndarray, R: np.ndarray, new_K: np.ndarray,
                size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (H, W) maps: for each rectified pixel, the raw pixel it samples."""
    R_arg = None if np.array_equal(R, np.eye(3)) else R
    if model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(K, D.reshape(4, 1), np.eye(3) if R_arg is None else R_arg,
                                                   new_K, size, cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(K, D, R_arg, new_K, size, cv2.CV_32FC1)


def _cached_maps(model: str, K: np.ndarray, D: np.ndarray, R: np.ndarray, new_K: np.ndarray,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    key = (model, K.tobytes(), D.tobytes(), R.tobytes(), new_K.tobytes(), tuple(size))
    with _MAP_LOCK:
        maps = _MAP_CACHE.get(key)
        if maps is not None:
            _MAP_CACHE.move_to_end(key)
            _MAP_STATS["hits"] += 1
            return maps
        maps = _build_maps(model, K, D, R, new_K, size)
        for m in maps:
            m.setflags(write=False)
        _MAP_STATS["builds"] += 1
        _MAP_CACHE[key] = maps
        while len(_MAP_CACHE) > _MAP_CACHE_SIZE:
            _MAP_CACHE.popitem(last=False)
        return maps


def rectified_camera_info_fields(intrinsics: Intrinsics) -> dict[str, Any]:
    """The calibration fields of the CameraInfo of a rectified (distortion-free pinhole) image with
    ``intrinsics``, named as ROS 2's ``sensor_msgs/CameraInfo``: ``width``, ``height``, ``distortion_model``
    ("plumb_bob"), ``d`` (5,) zeros, ``k`` (9,), ``r`` (9,) identity, ``p`` (12,) = [K | 0], float64.

    >>> f = rectified_camera_info_fields(Intrinsics(200.0, 200.0, 79.5, 59.5, 160, 120))
    >>> f["p"].reshape(3, 4)[:, 3].tolist(), f["d"].tolist(), f["width"]
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], 160)
    """
    if not isinstance(intrinsics, Intrinsics):
        raise TypeError(f"intrinsics must be an Intrinsics, got {type(intrinsics).__name__}")
    P = np.zeros((3, 4))
    P[:, :3] = intrinsics.K
    return {"width": intrinsics.width, "height": intrinsics.height, "distortion_model": "plumb_bob",
            "d": np.zeros(5), "k": intrinsics.K.reshape(-1), "r": np.eye(3).reshape(-1), "p": P.reshape(-1)}


class Undistorter:
    """Remaps raw images of a distorted camera into a pinhole geometry, with tables built once.

    Args:
        model: the raw camera (a supported distortion model; :class:`UnsupportedCameraModel` otherwise).
        alpha: when P is unset, the new camera matrix comes from ``cv2.getOptimalNewCameraMatrix`` with this
            alpha (0 = only valid pixels, no black border; 1 = every raw pixel kept) or, for ``equidistant``,
            ``cv2.fisheye.estimateNewCameraMatrixForUndistortRectify`` with this balance. Ignored when P is
            set (P's 3x3 is the new matrix, as ``image_proc`` does).

    :attr:`intrinsics` are those of the output images (same size as the input); :attr:`new_matrix_source`
    says where they come from ("P", "optimal alpha=..." or "fisheye balance=..."). The tables are looked up
    in (or added to) a per-process cache on first use and not pickled (DataLoader workers each build their
    own once).
    """

    def __init__(self, model: CameraModel, alpha: float = 0.0) -> None:
        if not isinstance(model, CameraModel):
            raise TypeError(f"model must be a CameraModel, got {type(model).__name__}")
        model.require_supported()
        if not (isinstance(alpha, (int, float, np.floating)) and 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"undistortion alpha must be in [0, 1], got {alpha!r}")
        self.model = model
        self.alpha = float(alpha)
        self._kind = model.distortion_model or "plumb_bob"
        size = model.size
        if self._kind == "equidistant":
            self._D = np.array(model.D, dtype=np.float64)
        else:  # no coefficients = zero distortion; OpenCV wants at least 4
            self._D = np.array(model.D if model.D.size else np.zeros(5), dtype=np.float64)
        if model.P is not None:
            new_K = np.array(model.P[:, :3])
            self.new_matrix_source = "P"
        elif self._kind == "equidistant":
            new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                model.K, self._D.reshape(4, 1), size, np.array(model.R), balance=self.alpha, new_size=size)
            self.new_matrix_source = f"fisheye balance={self.alpha:g}"
        else:
            new_K, _ = cv2.getOptimalNewCameraMatrix(np.array(model.K), self._D, size, self.alpha, size)
            self.new_matrix_source = f"optimal alpha={self.alpha:g}"
        if not np.all(np.isfinite(new_K)) or new_K[0, 0] <= 0 or new_K[1, 1] <= 0:
            raise ValueError(f"undistortion of {model} gave no valid camera matrix ({np.ravel(new_K).tolist()}); "
                             f"are the distortion coefficients of this camera?")
        self.intrinsics = Intrinsics.from_matrix(new_K, model.width, model.height)
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def __repr__(self) -> str:
        i = self.intrinsics
        return (f"Undistorter({self.model!r} -> pinhole fx {i.fx:.6g}, fy {i.fy:.6g}, cx {i.cx:.6g}, "
                f"cy {i.cy:.6g} from {self.new_matrix_source})")

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(map_u, map_v) float32 (H, W), read-only: the raw pixel each output pixel samples."""
        if self._maps is None:
            self._maps = _cached_maps(self._kind, self.model.K, self._D, self.model.R, self.intrinsics.K,
                                      self.model.size)
        return self._maps

    def _check_shape(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim not in (2, 3) or array.shape[:2] != (self.model.height, self.model.width):
            raise ValueError(f"image {array.shape[1] if array.ndim > 1 else '?'}x{array.shape[0]} (shape "
                             f"{array.shape}) does not match the calibrated {self.model.width}x{self.model.height}")
        return array

    def image(self, image: np.ndarray) -> np.ndarray:
        """Undistorted image (bilinear), same size, channels and dtype; 0 where no raw pixel maps.

        Args:
            image: (H, W) or (H, W, C<=4) uint8 / uint16 / int16 / float32 / float64 raw image.
        """
        image = self._check_shape(image)
        if image.dtype.type not in _CV2_REMAP_DTYPES or (image.ndim == 3 and image.shape[2] > 4):
            raise TypeError(f"bilinear undistortion needs a (H, W[, <=4]) uint8/uint16/int16/float32/float64 image, "
                            f"got {image.dtype} {image.shape}; use labels() for ids and masks")
        map_u, map_v = self.maps
        return cv2.remap(image, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def labels(self, array: np.ndarray, fill: float = 0) -> np.ndarray:
        """Undistorted depth / mask / instance ids (nearest neighbour: no values are mixed), ``fill`` where no
        raw pixel maps (e.g. ``np.nan`` for a 32FC1 depth image). Any dtype, (H, W) or (H, W, C)."""
        array = self._check_shape(array)
        if not np.issubdtype(array.dtype, np.floating) and not (math.isfinite(fill) and float(fill) == int(fill)):
            raise ValueError(f"fill {fill!r} cannot be stored in a {array.dtype} array")
        map_u, map_v = self.maps
        if array.dtype.type in _CV2_REMAP_DTYPES and (array.ndim == 2 or array.shape[2] <= 4):
            return cv2.remap(array, map_u, map_v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=fill)
        # dtypes OpenCV 4.x does not remap (bool, float16, int64, ...): the same rounding as its INTER_NEAREST
        u = np.rint(map_u).astype(np.int64)
        v = np.rint(map_v).astype(np.int64)
        inside = (u >= 0) & (u < array.shape[1]) & (v >= 0) & (v < array.shape[0])
        out = np.full(array.shape, fill, dtype=array.dtype)
        out[inside] = array[v[inside], u[inside]]
        return out

    def rectify_points(self, uv_raw: np.ndarray) -> np.ndarray:
        """Raw pixel coordinates (N, 2) -> their positions in the undistorted image (N, 2), float64."""
        uv = np.asarray(uv_raw, dtype=np.float64).reshape(-1, 1, 2)
        if self._kind == "equidistant":
            out = cv2.fisheye.undistortPoints(uv, self.model.K, self._D.reshape(4, 1), R=np.array(self.model.R),
                                              P=self.intrinsics.K)
        else:
            out = cv2.undistortPoints(uv, self.model.K, self._D, R=np.array(self.model.R), P=self.intrinsics.K)
        return out.reshape(-1, 2)

    def camera_info_fields(self, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        """CameraInfo fields (:func:`rectified_camera_info_fields`) of the undistorted image resized to
        ``width`` x ``height`` (default: its own size)."""
        return rectified_camera_info_fields(_resized(self.intrinsics, width, height))


def _resized(intrinsics: Intrinsics, width: int | None, height: int | None) -> Intrinsics:
    if width is None and height is None:
        return intrinsics
    if width is None or height is None:
        raise ValueError("give both width and height, or neither")
    return intrinsics if (width, height) == intrinsics.size else intrinsics.scaled(int(width), int(height))


# -------------------------------------------------------------------------------------------- policy
_RECTIFIED_TOPIC = re.compile(r"(^|/)image_rect[^/]*$")


def topic_is_rectified(topic: str, setting: str = "auto") -> bool:
    """Whether images on ``topic`` are rectified: ``setting`` "rectified" / "raw" decide, "auto" looks at the
    topic's last name (``image_rect``, ``image_rect_color``, ``image_rect_raw`` are rectified; a trailing
    ``/compressed`` is skipped).

    >>> topic_is_rectified("/camera/color/image_rect_color/compressed"), topic_is_rectified("/camera/image_raw")
    (True, False)
    """
    setting = (setting or "auto").strip().lower()
    if setting in ("rectified", "rect"):
        return True
    if setting == "raw":
        return False
    if setting != "auto":
        raise ValueError(f"camera input setting must be auto, rectified or raw, got {setting!r}")
    name = topic.rstrip("/")
    for suffix in ("/compressed", "/compressedDepth", "/theora"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return bool(_RECTIFIED_TOPIC.search(name))


@dataclass(frozen=True, eq=False)
class InputGeometry:
    """What to do with each image of one camera (:func:`resolve_input`).

    intrinsics: of the images :meth:`prepare` returns (what the Pipeline must be given).
    undistorter: None when images are used as they come.
    source: "P", "K", "K (P unset)" or "undistorted (<new matrix source>)".
    message: one log line saying what was decided and why.
    model: the camera; rectified: whether the input was taken as rectified.
    """

    intrinsics: Intrinsics
    undistorter: Undistorter | None
    source: str
    message: str
    model: CameraModel
    rectified: bool

    @property
    def remaps(self) -> bool:
        return self.undistorter is not None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The image in the geometry of :attr:`intrinsics`: undistorted (bilinear), or ``image`` itself."""
        if self.undistorter is None:
            if np.shape(image)[:2] != (self.intrinsics.height, self.intrinsics.width):
                raise ValueError(f"image {np.shape(image)[1]}x{np.shape(image)[0]} does not match the calibrated "
                                 f"{self.intrinsics.width}x{self.intrinsics.height} (use CameraModel.scaled)")
            return image
        return self.undistorter.image(image)

    def prepare_labels(self, array: np.ndarray, fill: float = 0) -> np.ndarray:
        """Depth / masks / ids in the geometry of :attr:`intrinsics` (nearest neighbour), or ``array`` itself."""
        return array if self.undistorter is None else self.undistorter.labels(array, fill)

    def camera_info_fields(self, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        """CameraInfo fields of an output (e.g. depth) image in this geometry at ``width`` x ``height``."""
        return rectified_camera_info_fields(_resized(self.intrinsics, width, height))


def resolve_input(model: CameraModel, *, rectified: bool, alpha: float = 0.0) -> InputGeometry:
    """Decide the intrinsics of ``model``'s images and whether they are undistorted (module docstring).

    Raises :class:`UnsupportedCameraModel` for raw input of a model this module cannot undistort, ValueError
    for an unusable calibration.

    >>> K = [[400.0, 0, 319.5], [0, 400.0, 239.5], [0, 0, 1]]
    >>> P = [[380.0, 0, 320.0, 0], [0, 380.0, 240.0, 0], [0, 0, 1, 0]]
    >>> m = CameraModel.from_fields(640, 480, K, [-0.2, 0.05, 0, 0, 0], "plumb_bob", P=P)
    >>> g = resolve_input(m, rectified=True)
    >>> g.source, g.intrinsics.fx, g.remaps
    ('P', 380.0, False)
    >>> g = resolve_input(m, rectified=False)
    >>> g.source, g.intrinsics.fx, g.remaps
    ('undistorted (P)', 380.0, True)
    """
    if not isinstance(model, CameraModel):
        raise TypeError(f"model must be a CameraModel, got {type(model).__name__}")
    size = f"{model.width}x{model.height}"
    if rectified:
        note = ""
        if model.distortion_model and model.distortion_model not in SUPPORTED_DISTORTION_MODELS:
            note = f" (distortion model {model.distortion_model!r} not used: the images are already rectified)"
        if model.P is not None:
            return InputGeometry(model.intrinsics_P(), None, "P",
                                 f"rectified input {size}: intrinsics from P{note}", model, True)
        warn = " and the non-zero D is ignored" if np.any(model.D != 0.0) else ""
        return InputGeometry(model.intrinsics_K(), None, "K (P unset)",
                             f"rectified input {size}: P is unset (all zeros), using K as the rectified camera "
                             f"matrix{warn}{note}", model, True)
    model.require_supported()
    if not model.has_distortion:
        return InputGeometry(model.intrinsics_K(), None, "K",
                             f"raw input {size} without distortion ({model.distortion_model or 'no model'}, D = 0): "
                             f"intrinsics from K, no undistortion", model, False)
    undistorter = Undistorter(model, alpha=alpha)
    i = undistorter.intrinsics
    return InputGeometry(i, undistorter, f"undistorted ({undistorter.new_matrix_source})",
                         f"raw {model.distortion_model} input {size} with D = {np.round(model.D, 6).tolist()}: "
                         f"undistorting every image (remap tables built once) to a pinhole camera fx {i.fx:.6g} "
                         f"fy {i.fy:.6g} cx {i.cx:.6g} cy {i.cy:.6g} from {undistorter.new_matrix_source}; "
                         f"depth is published in this rectified geometry", model, False)


class CameraInputResolver:
    """:func:`resolve_input` for a stream of CameraInfos: re-resolves only when the calibration changes.

    ``resolve(model)`` returns ``(geometry, changed)``; ``changed`` is True for the first model and for every
    model different from the previous one (log ``geometry.message`` then). Thread-safe.
    """

    def __init__(self, rectified: bool, alpha: float = 0.0) -> None:
        self.rectified = bool(rectified)
        self.alpha = float(alpha)
        self._lock = threading.Lock()
        self._last: tuple[CameraModel, InputGeometry] | None = None

    def resolve(self, model: CameraModel) -> tuple[InputGeometry, bool]:
        with self._lock:
            if self._last is not None and self._last[0] == model:
                return self._last[1], False
            geometry = resolve_input(model, rectified=self.rectified, alpha=self.alpha)
            self._last = (model, geometry)
            return geometry, True
