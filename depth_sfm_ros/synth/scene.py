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

Randomised profiles (:mod:`depth_sfm_ros.synth.randomization`) add objects that do not follow the
road: boxes placed in world coordinates, either static, moving at a constant world velocity
(cross-street traffic) or walking back and forth (pedestrians); boxes raised above the ground
(tree crowns, table tops, door lintels, ceilings); and objects made of several boxes that share one
instance id (a tree = trunk + crown, a table = top + legs). :class:`ObjectTableBuilder` collects
them; street and indoor layouts live in :mod:`.street` and :mod:`.indoor`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_sfm_ros.geometry import Pose, euler_to_matrix

# object kinds (box kinds; several kinds can name one instance kind, e.g. trunk and crown -> "tree")
BUILDING, CAR, POLE, BOX = 1, 2, 3, 4
PEDESTRIAN, TRUNK, CROWN, BUSH = 5, 6, 7, 8
WALL, CEILING, TABLE, SHELF, SOFA, CABINET = 9, 10, 11, 12, 13, 14
KIND_NAMES = {BUILDING: "building", CAR: "car", POLE: "pole", BOX: "box", PEDESTRIAN: "pedestrian",
              TRUNK: "tree", CROWN: "tree", BUSH: "bush", WALL: "wall", CEILING: "ceiling", TABLE: "table",
              SHELF: "shelf", SOFA: "sofa", CABINET: "cabinet"}

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
    # randomised profiles only (the defaults reproduce the classic street camera exactly)
    lane_d_m: float = LANE_CAMERA_D  # lateral offset of the camera path from the road centre line
    yaw_amp_rad: float = 0.0  # yaw wobble on top of the road heading (handheld / robot scanning)
    yaw_period_s: float = 6.0
    yaw_phase: float = 0.0
    mount_pitch_rad: float = 0.0  # constant camera tilt, positive = optical axis towards the ground
    mount_roll_rad: float = 0.0  # constant roll about the driving direction

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
        d = self.lane_d_m + self.sway_amp_m * math.sin(2 * math.pi * t_s / ps + fs)
        z = self.height_m + self.bounce_amp_m * math.sin(2 * math.pi * t_s / pb + fb)
        yaw = float(self.road.heading(x))
        pitch = self.pitch_amp_rad * math.sin(2 * math.pi * t_s / pp + fp)
        position = [x, float(self.road.y(x)) + d, z]
        if self.yaw_amp_rad or self.mount_pitch_rad or self.mount_roll_rad:  # randomised camera
            yaw += self.yaw_amp_rad * math.sin(2 * math.pi * t_s / self.yaw_period_s + self.yaw_phase)
            return camera_pose(position, yaw, pitch + self.mount_pitch_rad, self.mount_roll_rad)
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        R_world_vehicle = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]]) @ \
            np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        return Pose.from_Rt(R_world_vehicle @ R_VEHICLE_OPTICAL, position)


def camera_pose(position_m: list[float] | np.ndarray, yaw_rad: float, pitch_down_rad: float,
                roll_rad: float) -> Pose:
    """T_world_cam of an optical frame mounted on a vehicle at ``position_m`` (3,) world metres.

    The vehicle frame (x forward, y left, z up) is yawed by ``yaw_rad`` about world z, tilted by
    ``pitch_down_rad`` (positive: the optical axis points below the horizon) and rolled by
    ``roll_rad`` about its forward axis: R_world_vehicle = Rz(yaw) Ry(pitch) Rx(roll)."""
    R_world_vehicle = euler_to_matrix(roll_rad, pitch_down_rad, yaw_rad)
    return Pose.from_Rt(R_world_vehicle @ R_VEHICLE_OPTICAL, position_m)


@dataclass
class Objects:
    """All boxes of a scene as parallel arrays (N boxes).

    instance_id (N,) int32 >= 1, stable (the classic street: one box per instance, id = row + 1;
    randomised layouts: several boxes may share an id); kind (N,) int (BUILDING/CAR/...);
    half_extent_m (N, 3) (along, across, half height) in the box frame (x along the road or the
    object's heading, y left, z up, origin at the bottom centre); colour (N, 3) float32 in [0, 1];
    x0_m (N,) along-road position at t = 0; speed_mps (N,) along world x (negative = oncoming);
    lane_d_m (N,) lateral offset; yaw_offset_rad (N,) (pi for oncoming); follows_camera (N,) bool:
    x = camera x(t) + gap_m.

    Optional (None -> every box follows the road model above, at ground level):
    on_road (N,) bool (False: placed in world coordinates); xy0_m (N, 2) world position of an
    off-road box at t = 0; velocity_mps (N, 2) its world velocity; pingpong_s (N,) > 0: it walks
    for that many seconds along its velocity, turns round (yaw + pi) and walks back, forever;
    yaw0_rad (N,) its world yaw; z0_m (N,) height of the box bottom above the ground (any box).
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
    on_road: np.ndarray | None = None
    xy0_m: np.ndarray | None = None
    velocity_mps: np.ndarray | None = None
    pingpong_s: np.ndarray | None = None
    yaw0_rad: np.ndarray | None = None
    z0_m: np.ndarray | None = None

    @property
    def is_dynamic(self) -> np.ndarray:
        """(N,) bool: the box moves in the world."""
        moving = (self.speed_mps != 0.0) | self.follows_camera
        if self.on_road is not None:
            moving = np.where(self.on_road, moving, np.any(self.velocity_mps != 0.0, axis=1))
        return moving

    def __len__(self) -> int:
        return int(self.instance_id.shape[0])

    def positions(self, t_s: float, camera_x_m: float, road: Road) -> tuple[np.ndarray, np.ndarray]:
        """World positions (N, 3) of the box origins (bottom centres) and yaws (N,) at time t."""
        x = np.where(self.follows_camera, camera_x_m + self.gap_m, self.x0_m + self.speed_mps * t_s)
        y = road.y(x) + self.lane_d_m
        xyz = np.stack([x, y, np.zeros_like(x)], axis=1)
        yaw = road.heading(x) + self.yaw_offset_rad
        if self.on_road is None:  # the classic street: every box on the road model
            return xyz, yaw
        off = ~self.on_road
        xy_off, yaw_off = self._world_motion(t_s)
        xyz[off, :2] = xy_off[off]
        yaw = np.where(off, yaw_off, yaw)
        xyz[:, 2] = self.z0_m
        return xyz, yaw

    def _world_motion(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 2) and yaws (N,) of the off-road model at time t: constant velocity, or
        back and forth (triangle wave of period 2 * pingpong_s) where pingpong_s > 0."""
        period = np.where(self.pingpong_s > 0.0, self.pingpong_s, 1.0)
        cycle = np.mod(t_s / period, 2.0)
        returning = (self.pingpong_s > 0.0) & (cycle >= 1.0)
        travel_s = np.where(self.pingpong_s > 0.0, np.where(returning, 2.0 - cycle, cycle) * period, t_s)
        xy = self.xy0_m + self.velocity_mps * travel_s[:, None]
        return xy, self.yaw0_rad + np.where(returning, math.pi, 0.0)


class ObjectTableBuilder:
    """Collects boxes for :class:`Objects` (randomised layouts): boxes on the road model or placed in
    world coordinates; ``new_instance()`` hands out ids so several boxes can form one instance."""

    def __init__(self) -> None:
        self._rows: list[dict] = []
        self._next_id = 1

    def new_instance(self) -> int:
        """A fresh instance id (1, 2, ... in call order)."""
        self._next_id += 1
        return self._next_id - 1

    def add_road_box(self, kind: int, half_extent_m: tuple[float, float, float], colour: list[float],
                     x0_m: float, *, speed_mps: float = 0.0, lane_d_m: float = 0.0, yaw_offset_rad: float = 0.0,
                     follows_camera: bool = False, gap_m: float = 0.0, z0_m: float = 0.0,
                     instance: int | None = None) -> int:
        """A box that follows the road model (see :class:`Objects`); returns its instance id."""
        iid = self.new_instance() if instance is None else instance
        self._rows.append(dict(instance=iid, kind=kind, half=half_extent_m, colour=colour, x0=x0_m, speed=speed_mps,
                               d=lane_d_m, yaw_off=yaw_offset_rad, follows=follows_camera, gap=gap_m, on_road=True,
                               xy0=(0.0, 0.0), vel=(0.0, 0.0), pingpong=0.0, yaw0=0.0, z0=z0_m))
        return iid

    def add_world_box(self, kind: int, half_extent_m: tuple[float, float, float], colour: list[float],
                      xy0_m: tuple[float, float], *, yaw_rad: float = 0.0,
                      velocity_mps: tuple[float, float] = (0.0, 0.0), pingpong_s: float = 0.0, z0_m: float = 0.0,
                      instance: int | None = None) -> int:
        """A box placed in world coordinates (bottom centre at ``xy0_m``, ``z0_m``); returns its instance id."""
        iid = self.new_instance() if instance is None else instance
        self._rows.append(dict(instance=iid, kind=kind, half=half_extent_m, colour=colour, x0=0.0, speed=0.0, d=0.0,
                               yaw_off=0.0, follows=False, gap=0.0, on_road=False, xy0=xy0_m, vel=velocity_mps,
                               pingpong=pingpong_s, yaw0=yaw_rad, z0=z0_m))
        return iid

    def __len__(self) -> int:
        return len(self._rows)

    def build(self) -> Objects:
        if not self._rows:
            raise ValueError("a scene needs at least one box")

        def col(key: str, dtype) -> np.ndarray:
            return np.array([r[key] for r in self._rows], dtype=dtype)

        return Objects(instance_id=col("instance", np.int32), kind=col("kind", np.int64),
                       half_extent_m=col("half", np.float64), colour=col("colour", np.float32),
                       x0_m=col("x0", np.float64), speed_mps=col("speed", np.float64), lane_d_m=col("d", np.float64),
                       yaw_offset_rad=col("yaw_off", np.float64), follows_camera=col("follows", bool),
                       gap_m=col("gap", np.float64), on_road=col("on_road", bool), xy0_m=col("xy0", np.float64),
                       velocity_mps=col("vel", np.float64), pingpong_s=col("pingpong", np.float64),
                       yaw0_rad=col("yaw0", np.float64), z0_m=col("z0", np.float64))


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
