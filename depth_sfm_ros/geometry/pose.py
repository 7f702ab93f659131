"""Rigid transforms (SE(3)) in numpy: a ``Pose`` object and the rotation conversions.

Naming: ``T_a_b`` is the pose of frame b expressed in frame a, i.e. it maps points from
frame b to frame a: ``p_a = T_a_b @ p_b``. Composition chains frames: ``T_a_c = T_a_b @ T_b_c``.
Pose vectors are ``[tx, ty, tz, rx, ry, rz]`` with an axis-angle rotation in radians, the
layout PoseNet predicts. Quaternions are ``(x, y, z, w)`` as in geometry_msgs.

numpy only (the runtime and the ROS node use it without torch); the batched torch versions
live in :mod:`depth_sfm_ros.geometry.ops`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_EPS = 1e-12


def _skew(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def axis_angle_to_matrix(rotvec: Sequence[float]) -> np.ndarray:
    """Rodrigues' formula: axis-angle (3,) in radians -> rotation matrix (3, 3).

    >>> np.allclose(axis_angle_to_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0])
    True
    """
    w = np.asarray(rotvec, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(w))
    if theta < 1e-8:
        return np.eye(3) + _skew(w)
    k = _skew(w / theta)
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> axis-angle (3,), angle in [0, pi]."""
    R = np.asarray(R, dtype=np.float64)
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def quaternion_to_axis_angle(q_xyzw: Sequence[float]) -> np.ndarray:
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / max(np.linalg.norm(q), _EPS)
    if q[3] < 0:
        q = -q
    sin_half = np.linalg.norm(q[:3])
    if sin_half < 1e-12:
        return 2.0 * q[:3]
    angle = 2.0 * np.arctan2(sin_half, q[3])
    return q[:3] / sin_half * angle


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quaternion_to_matrix(q_xyzw: Sequence[float]) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> rotation matrix (3, 3). The quaternion is normalised."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / max(np.linalg.norm(q_xyzw), _EPS)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def euler_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Extrinsic X-Y-Z (roll about x, then pitch about y, then yaw about z): R = Rz @ Ry @ Rx."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def matrix_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`euler_to_matrix`: (roll, pitch, yaw) with pitch in [-pi/2, pi/2]."""
    R = np.asarray(R, dtype=np.float64)
    pitch = float(np.arcsin(np.clip(-R[2, 0], -1.0, 1.0)))
    if abs(R[2, 0]) < 1.0 - 1e-9:
        roll = float(np.arctan2(R[2, 1], R[2, 2]))
        yaw = float(np.arctan2(R[1, 0], R[0, 0]))
    else:  # gimbal lock: yaw and roll share one axis, put it all in yaw
        roll = 0.0
        yaw = float(np.arctan2(-R[0, 1], R[1, 1]))
    return roll, pitch, yaw


class Pose:
    """A rigid transform ``T_a_b`` (4x4, float64). Immutable by convention.

    >>> T = Pose.from_vec([1, 0, 0, 0, 0, np.pi / 2])
    >>> np.allclose((T @ T.inverse()).matrix, np.eye(4))
    True
    >>> np.allclose(T.transform_points(np.zeros((1, 3))), [[1, 0, 0]])
    True
    """

    __slots__ = ("_matrix",)

    def __init__(self, matrix: np.ndarray | None = None) -> None:
        if matrix is None:
            matrix = np.eye(4)
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape == (3, 4):
            matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
        if matrix.shape != (4, 4):
            raise ValueError(f"a pose matrix must be 4x4 or 3x4, got {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("a pose matrix must be finite")
        self._matrix = matrix.copy()
        self._matrix.setflags(write=False)

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def identity(cls) -> "Pose":
        return cls(np.eye(4))

    @classmethod
    def from_Rt(cls, R: np.ndarray, t: Sequence[float]) -> "Pose":
        m = np.eye(4)
        m[:3, :3] = R
        m[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
        return cls(m)

    @classmethod
    def from_vec(cls, vec: Sequence[float]) -> "Pose":
        """From ``[tx, ty, tz, rx, ry, rz]`` (translation, axis-angle)."""
        vec = np.asarray(vec, dtype=np.float64).reshape(6)
        return cls.from_Rt(axis_angle_to_matrix(vec[3:]), vec[:3])

    @classmethod
    def from_quaternion(cls, t: Sequence[float], q_xyzw: Sequence[float]) -> "Pose":
        return cls.from_Rt(quaternion_to_matrix(q_xyzw), t)

    # --- accessors ----------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        return self._matrix

    @property
    def R(self) -> np.ndarray:
        return self._matrix[:3, :3]

    @property
    def t(self) -> np.ndarray:
        return self._matrix[:3, 3]

    def to_vec(self) -> np.ndarray:
        """``[tx, ty, tz, rx, ry, rz]``."""
        return np.concatenate([self.t, matrix_to_axis_angle(self.R)])

    def quaternion(self) -> np.ndarray:
        """Rotation as (x, y, z, w)."""
        return matrix_to_quaternion(self.R)

    def rotation_angle(self) -> float:
        """Angle of the rotation part, radians in [0, pi]."""
        return float(np.arccos(np.clip((np.trace(self.R) - 1.0) / 2.0, -1.0, 1.0)))

    # --- algebra ------------------------------------------------------------------------------
    def inverse(self) -> "Pose":
        R_inv = self.R.T
        return Pose.from_Rt(R_inv, -R_inv @ self.t)

    def __matmul__(self, other: "Pose") -> "Pose":
        if not isinstance(other, Pose):
            return NotImplemented
        return Pose(self._matrix @ other._matrix)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Apply to points (..., 3)."""
        points = np.asarray(points)
        return points @ self.R.T.astype(points.dtype, copy=False) + self.t.astype(points.dtype, copy=False)

    def with_translation_scaled(self, scale: float) -> "Pose":
        """The same rotation with the translation multiplied by ``scale`` (monocular scale fix)."""
        return Pose.from_Rt(self.R, self.t * scale)

    def orthonormalized(self) -> "Pose":
        """Project the rotation back onto SO(3) (use after long chains of products)."""
        u, _, vt = np.linalg.svd(self.R)
        R = u @ vt
        if np.linalg.det(R) < 0:
            u[:, -1] *= -1
            R = u @ vt
        return Pose.from_Rt(R, self.t)

    def __repr__(self) -> str:
        return f"Pose(t={np.array2string(self.t, precision=4)}, rotvec={np.array2string(matrix_to_axis_angle(self.R), precision=4)})"


def twist_in_current_frame(T_prev_cur: Pose, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference twist of a frame that moved by ``T_prev_cur`` in ``dt_s`` seconds.

    Returns (linear m/s (3,), angular rad/s (3,)), both expressed in the *current* frame: linear is the
    displacement ``R^T t`` over dt, angular the rotation vector over dt (the same in either frame).
    Used by the ground-truth odometry the bag writers record.

    >>> linear, angular = twist_in_current_frame(Pose.from_Rt(np.eye(3), [0.0, 0.0, 1.0]), 0.5)
    >>> linear.tolist(), angular.tolist()
    ([0.0, 0.0, 2.0], [0.0, 0.0, 0.0])
    """
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s}")
    return T_prev_cur.R.T @ T_prev_cur.t / dt_s, matrix_to_axis_angle(T_prev_cur.R) / dt_s
