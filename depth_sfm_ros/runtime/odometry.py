"""Visual odometry integration: ``T_odom_cur = T_odom_prev @ T_prev_cur`` (numpy only)."""
from __future__ import annotations

from ..geometry import Pose


class OdometryIntegrator:
    """Chains scaled relative poses into the pose of the camera in the ``odom`` frame.

    ``odom`` is the camera frame at the first frame (or at the last reset).
    """

    def __init__(self, reorthonormalize_every: int = 100) -> None:
        if reorthonormalize_every < 1:
            raise ValueError(f"reorthonormalize_every must be >= 1, got {reorthonormalize_every}")
        self._every = int(reorthonormalize_every)
        self.T_odom_cam = Pose.identity()
        self.steps = 0

    def reset(self) -> Pose:
        """Restart at the identity; returns it."""
        self.T_odom_cam = Pose.identity()
        self.steps = 0
        return self.T_odom_cam

    def update(self, T_prev_cur: Pose) -> Pose:
        """Append one relative pose (already metric-scaled); returns the new ``T_odom_cam``."""
        if not isinstance(T_prev_cur, Pose):
            raise TypeError(f"T_prev_cur must be a Pose, got {type(T_prev_cur).__name__}")
        self.T_odom_cam = self.T_odom_cam @ T_prev_cur
        self.steps += 1
        if self.steps % self._every == 0:
            self.T_odom_cam = self.T_odom_cam.orthonormalized()
        return self.T_odom_cam
