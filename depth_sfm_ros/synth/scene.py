"""Scene layout of a synthetic street: road curve, camera trajectory and box objects (numpy only).

World frame ``world``: x along the road's general direction, y left, z up; the ground is z = 0.
The road centre line is ``y = road_y(x)`` (a sum of two gentle sinusoids), so road coordinates
are analytic: along-road ``x`` and lateral offset ``d = y - road_y(x)`` (positive = left).
Traffic drives on the right: the camera's lane is at d = -1.75 m, a faster/slower lane at
d = -5.25 m, oncoming lanes at d = +1.75 m and +5.25 m, parked cars at |d| = 8.6 m,
poles on the pavement at |d| = 10.3 m, building facades from |d| = 12 m.

Every object is a yaw-rotated box; moving objects follow the road at their own constant
speed (oncoming ones at negative speed); one car ("lead car") keeps a constant gap ahead of
the camera, i.e. has exactly the camera's velocity along the road.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_sfm_ros.geometry import Pose

# object kinds
BUILDING, CAR, POLE, BOX = 1, 2, 3, 4
KIND_NAMES = {BUILDING: "building", CAR: "car", POLE: "pole", BOX: "box"}

LANE_CAMERA_D = -1.75
LANE_SAME_D = -5.25
LANES_ONCOMING_D = (1.75, 5.25)
PARKING_D = 8.6
POLE_D = 10.3
FACADE_D = 12.0

# optical frame (x right, y down, z forward) in the vehicle frame (x forward, y left, z up)
R_VEHICLE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Road:
    """Centre line y = sum_k A_k sin(2 pi x / L_k + phi_k) in world metres."""

    amplitudes_m: tuple[float, float]
    wavelengths_m: tuple[float, float]
    phases_rad: tuple[float, float]

    def y(self, x_m: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x_m, dtype=np.float64)
        return sum(a * np.sin(2 * math.pi * x / w + p)
                   for a, w, p in zip(self.amplitudes_m, self.wavelengths_m, self.phases_rad))

    def slope(self, x_m: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x_m, dtype=np.float64)
        return sum(a * 2 * math.pi / w * np.cos(2 * math.pi * x / w + p)
                   for a, w, p in zip(self.amplitudes_m, self.wavelengths_m, self.phases_rad))

    def heading(self, x_m: np.ndarray | float) -> np.ndarray:
        """Yaw of the road direction (radians, about world z)."""
        return np.arctan(self.slope(x_m))


@dataclass(frozen=True)
class Trajectory:
    """Camera motion: along-road position x(t) from a speed profile, small sway, pitch and bounce."""

    road: Road
    speed_mean_mps: float
    speed_amp_mps: float
    speed_period_s: float
    speed_phase: float
    height_m: float
    bounce_amp_m: float
    pitch_amp_rad: float
    sway_amp_m: float
    motion_period_s: tuple[float, float, float]  # bounce, pitch, sway
    motion_phase: tuple[float, float, float]

    def arclength(self, t_s: np.ndarray | float) -> np.ndarray:
        """Distance travelled (m) at time t: integral of the speed profile."""
        t = np.asarray(t_s, dtype=np.float64)
        w = 2 * math.pi / self.speed_period_s
        phase = self.speed_phase
        return self.speed_mean_mps * t + self.speed_amp_mps / w * (np.cos(phase) - np.cos(w * t + phase))

    def x(self, t_s: np.ndarray | float) -> np.ndarray:
        """Along-road world x (m); the road's arclength is mapped through a dense table."""
        s = np.asarray(self.arclength(t_s))
        s_max = float(np.max(s)) + 10.0
        grid = np.arange(0.0, max(s_max * 1.3, 20.0), 0.25)
        arc = np.concatenate([[0.0], np.cumsum(np.sqrt(1.0 + self.road.slope(grid[:-1] + 0.125) ** 2) * 0.25)])
        return np.interp(s, arc, grid)

    def T_world_cam(self, t_s: float) -> Pose:
        """Pose of the camera optical frame in the world at time t."""
        x = float(self.x(t_s))
        pb, pp, ps = self.motion_period_s
        fb, fp, fs = self.motion_phase
        d = LANE_CAMERA_D + self.sway_amp_m * math.sin(2 * math.pi * t_s / ps + fs)
        z = self.height_m + self.bounce_amp_m * math.sin(2 * math.pi * t_s / pb + fb)
        yaw = float(self.road.heading(x))
        pitch = self.pitch_amp_rad * math.sin(2 * math.pi * t_s / pp + fp)
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        R_world_vehicle = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]]) @ \
            np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        position = [x, float(self.road.y(x)) + d, z]
        return Pose.from_Rt(R_world_vehicle @ R_VEHICLE_OPTICAL, position)


@dataclass
class Objects:
    """All boxes of a scene as parallel arrays (N objects).

    instance_id (N,) int32 >= 1, stable; kind (N,) int (BUILDING/CAR/POLE/BOX); half_extent_m (N, 3)
    (along, across, half height) in the box frame (x along the road, y left, z up, origin at the
    bottom centre); colour (N, 3) float32 in [0, 1]; x0_m (N,) along-road position at t = 0;
    speed_mps (N,) along world x (negative = oncoming); lane_d_m (N,) lateral offset; yaw_offset_rad
    (N,) (pi for oncoming); follows_camera (N,) bool: x = camera x(t) + gap_m.
    """

    instance_id: np.ndarray
    kind: np.ndarray
    half_extent_m: np.ndarray
    colour: np.ndarray
    x0_m: np.ndarray
    speed_mps: np.ndarray
    lane_d_m: np.ndarray
    yaw_offset_rad: np.ndarray
    follows_camera: np.ndarray
    gap_m: np.ndarray

    @property
    def is_dynamic(self) -> np.ndarray:
        """(N,) bool: the object moves in the world."""
        return (self.speed_mps != 0.0) | self.follows_camera

    def __len__(self) -> int:
        return int(self.instance_id.shape[0])

    def positions(self, t_s: float, camera_x_m: float, road: Road) -> tuple[np.ndarray, np.ndarray]:
        """World positions (N, 3) of the box origins and yaws (N,) at time t."""
        x = np.where(self.follows_camera, camera_x_m + self.gap_m, self.x0_m + self.speed_mps * t_s)
        y = road.y(x) + self.lane_d_m
        xyz = np.stack([x, y, np.zeros_like(x)], axis=1)
        return xyz, road.heading(x) + self.yaw_offset_rad


def _random_colour(rng: np.random.Generator, lo: float, hi: float) -> list[float]:
    base = rng.uniform(lo, hi)
    return list(np.clip(base + rng.uniform(-0.15, 0.15, size=3), 0.05, 0.95))


def build_objects(rng: np.random.Generator, x_min_m: float, x_max_m: float, duration_s: float,
                  camera_speed_mps: float, lead_gap_m: float) -> Objects:
    """Seeded street furniture and traffic covering world x in [x_min_m, x_max_m] over the duration."""
    rows: list[tuple] = []  # (kind, half_extent, colour, x0, speed, d, yaw_offset, follows, gap)

    def add(kind, half, colour, x0, speed=0.0, d=0.0, yaw_off=0.0, follows=False, gap=0.0):
        rows.append((kind, half, colour, x0, speed, d, yaw_off, follows, gap))

    # the lead car moving with the camera (first dynamic object, so its id is stable: 1)
    add(CAR, (2.1, 0.9, 0.75), _random_colour(rng, 0.3, 0.8), 0.0, d=LANE_CAMERA_D, follows=True, gap=lead_gap_m)
    for side in (-1.0, 1.0):
        x = x_min_m + rng.uniform(0.0, 10.0)
        while x < x_max_m:  # facades with gaps and varying setback
            length = rng.uniform(8.0, 26.0)
            depth = rng.uniform(8.0, 14.0)
            height = rng.uniform(5.0, 22.0)
            setback = FACADE_D + rng.uniform(0.0, 3.0) + depth / 2
            add(BUILDING, (length / 2, depth / 2, height / 2), _random_colour(rng, 0.35, 0.8), x + length / 2,
                d=side * setback)
            x += length + (rng.uniform(3.0, 12.0) if rng.random() < 0.35 else rng.uniform(0.0, 0.6))
        x = x_min_m + rng.uniform(0.0, 15.0)
        while x < x_max_m:  # parked cars and boxes
            if rng.random() < 0.75:
                add(CAR, (rng.uniform(1.9, 2.4), rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.85)),
                    _random_colour(rng, 0.15, 0.85), x, d=side * (PARKING_D + rng.uniform(-0.3, 0.3)))
            else:
                add(BOX, tuple(rng.uniform(0.4, 1.0, size=3)), _random_colour(rng, 0.2, 0.7), x,
                    d=side * (PARKING_D + 0.8))
            x += rng.uniform(7.0, 25.0)
        x = x_min_m + rng.uniform(0.0, 20.0)
        while x < x_max_m:  # poles
            add(POLE, (0.12, 0.12, rng.uniform(2.5, 4.0)), _random_colour(rng, 0.2, 0.5), x, d=side * POLE_D)
            x += rng.uniform(15.0, 35.0)
    # traffic: enough cars per lane that the lanes stay populated for the whole duration
    lanes = [(LANE_SAME_D, 1.0)] + [(d, -1.0) for d in LANES_ONCOMING_D]
    for d, direction in lanes:
        lo = x_min_m - 14.0 * duration_s if direction > 0 else x_min_m
        hi = x_max_m if direction > 0 else x_max_m + 14.0 * duration_s
        x = lo + rng.uniform(0.0, 20.0)
        while x < hi:
            speed = direction * rng.uniform(0.6, 1.3) * camera_speed_mps if direction > 0 else -rng.uniform(6.0, 13.0)
            add(CAR, (rng.uniform(1.9, 2.5), rng.uniform(0.85, 1.0), rng.uniform(0.7, 0.9)),
                _random_colour(rng, 0.15, 0.9), x, speed=speed, d=d + rng.uniform(-0.2, 0.2),
                yaw_off=0.0 if direction > 0 else math.pi)
            x += rng.uniform(25.0, 70.0)

    def col(i, dtype):
        return np.array([r[i] for r in rows], dtype=dtype)

    return Objects(instance_id=np.arange(1, len(rows) + 1, dtype=np.int32), kind=col(0, np.int64),
                   half_extent_m=col(1, np.float64), colour=col(2, np.float32), x0_m=col(3, np.float64),
                   speed_mps=col(4, np.float64), lane_d_m=col(5, np.float64), yaw_offset_rad=col(6, np.float64),
                   follows_camera=col(7, bool), gap_m=col(8, np.float64))
