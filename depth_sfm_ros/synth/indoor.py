"""Indoor scenes (rooms and corridors) and the looping indoor camera path (numpy only).

Layout, world frame as everywhere (x along the main space, y left, z up, floor z = 0): a main
space (room or corridor) of width W along x in [x0, x1], |y| < W / 2; behind each long wall a
strip of side rooms (2.5-5 m deep) separated by partitions; each side room has a door opening
(0.8-1.4 m wide, 2.0-2.2 m high, a lintel box above) in the main wall with probability 0.7;
outer and end walls close the building and one ceiling slab covers all of it, so every ray hits
a surface (no sky indoors). Walls reach 0.1 m into the ceiling slab, so there are no cracks.
Furniture stands against the walls: tables (top + 4 legs), shelves, cabinets, sofas (seat +
backrest); in a room within 0.9 m of the long walls, in a corridor only shallow pieces on the
right-hand wall. An optional person walks back and forth in a lane the camera never enters.

Camera: in a room, a closed "stadium" path (two straights joined by half circles) 1.5 m from the
walls (:class:`LoopTrajectory`); in a corridor, straight along its centre line (the street
:class:`~.scene.Trajectory` on a flat road). Both at 0.2-1.5 m/s with yaw wobble and a little
handheld bounce and pitch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from depth_sfm_ros.geometry import Pose

from .randomization import RandomizationRanges, palette_colour
from .scene import (CABINET, CEILING, PEDESTRIAN, SHELF, SOFA, TABLE, WALL, ObjectTableBuilder, Objects,
                    camera_pose)

WALL_THICKNESS_M = 0.15
CAMERA_WALL_CLEARANCE_M = 1.5  # room: camera path distance from the walls
ROOM_FURNITURE_DEPTH_M = 0.9
CORRIDOR_FURNITURE_DEPTH_M = 0.4
ROOM_WALKER_WALL_M = 1.15  # room: walker lane distance from a long wall
CORRIDOR_WALKER_WALL_M = 0.45


@dataclass(frozen=True)
class IndoorLayout:
    """Footprint of an indoor scene: kind "room" / "corridor", main width (m), x range (m),
    side-room depths (m) on the right (-y) and left (+y), ceiling and door heights (m)."""

    kind: str
    width_m: float
    x0_m: float
    x1_m: float
    side_depth_m: tuple[float, float]
    ceiling_height_m: float
    door_height_m: float

    @property
    def half_width_m(self) -> float:
        return self.width_m / 2.0


@dataclass(frozen=True)
class LoopTrajectory:
    """Camera on a closed stadium path centred at the origin: straights along x at y = -+radius from
    x = -straight_half_m to +straight_half_m, joined by half circles of ``radius_m``; constant speed,
    counter-clockwise (``clockwise`` mirrors it). Heading follows the path plus a yaw wobble;
    mount pitch / roll are constant, handheld bounce and pitch wobble are small sinusoids."""

    straight_half_m: float
    radius_m: float
    speed_mps: float
    start_m: float
    clockwise: bool
    height_m: float
    bounce_amp_m: float
    pitch_amp_rad: float
    yaw_amp_rad: float
    motion_period_s: tuple[float, float, float]  # bounce, pitch, yaw
    motion_phase: tuple[float, float, float]
    mount_pitch_rad: float
    mount_roll_rad: float

    @property
    def perimeter_m(self) -> float:
        return 4.0 * self.straight_half_m + 2.0 * math.pi * self.radius_m

    def point(self, s_m: float) -> tuple[float, float, float]:
        """(x, y, heading) at arclength s along the path (m, m, rad)."""
        ls, r = self.straight_half_m, self.radius_m
        s = s_m % self.perimeter_m
        if s < 2 * ls:
            x, y, heading = -ls + s, -r, 0.0
        elif s < 2 * ls + math.pi * r:
            phi = -math.pi / 2 + (s - 2 * ls) / r
            x, y, heading = ls + r * math.cos(phi), r * math.sin(phi), phi + math.pi / 2
        elif s < 4 * ls + math.pi * r:
            x, y, heading = ls - (s - 2 * ls - math.pi * r), r, math.pi
        else:
            phi = math.pi / 2 + (s - 4 * ls - math.pi * r) / r
            x, y, heading = -ls + r * math.cos(phi), r * math.sin(phi), phi + math.pi / 2
        if self.clockwise:  # mirror y: the path is traversed the other way round
            y, heading = -y, -heading
        return x, y, heading

    def x(self, t_s: np.ndarray | float) -> np.ndarray:
        """World x (m) of the camera at time(s) t."""
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        xs = np.array([self.point(self.start_m + self.speed_mps * float(v))[0] for v in t.ravel()])
        return xs.reshape(t.shape) if np.ndim(t_s) else xs[0]

    def T_world_cam(self, t_s: float) -> Pose:
        x, y, heading = self.point(self.start_m + self.speed_mps * t_s)
        (pb, pp, py), (fb, fp, fy) = self.motion_period_s, self.motion_phase
        z = self.height_m + self.bounce_amp_m * math.sin(2 * math.pi * t_s / pb + fb)
        yaw = heading + self.yaw_amp_rad * math.sin(2 * math.pi * t_s / py + fy)
        pitch = self.mount_pitch_rad + self.pitch_amp_rad * math.sin(2 * math.pi * t_s / pp + fp)
        return camera_pose([x, y, z], yaw, pitch, self.mount_roll_rad)


def room_layout(rng: np.random.Generator, width_m: float, ceiling_height_m: float) -> IndoorLayout:
    """A room W x (W + 1..6 m) centred at the origin."""
    length = width_m + float(rng.uniform(1.0, 6.0))
    return IndoorLayout(kind="room", width_m=width_m, x0_m=-length / 2, x1_m=length / 2,
                        side_depth_m=(float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0))),
                        ceiling_height_m=ceiling_height_m,
                        door_height_m=min(float(rng.uniform(2.0, 2.2)), ceiling_height_m - 0.2))


def corridor_layout(rng: np.random.Generator, width_m: float, ceiling_height_m: float,
                    camera_x_end_m: float) -> IndoorLayout:
    """A corridor from x = -6 m to 6-15 m beyond the camera's last position."""
    return IndoorLayout(kind="corridor", width_m=width_m, x0_m=-6.0,
                        x1_m=camera_x_end_m + float(rng.uniform(6.0, 15.0)),
                        side_depth_m=(float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0))),
                        ceiling_height_m=ceiling_height_m,
                        door_height_m=min(float(rng.uniform(2.0, 2.2)), ceiling_height_m - 0.2))


def room_loop(rng: np.random.Generator, layout: IndoorLayout, speed_mps: float, height_m: float,
              yaw_wobble_rad: float, mount_pitch_rad: float, mount_roll_rad: float) -> LoopTrajectory:
    """The stadium path 1.5 m from the walls of a room layout."""
    radius = layout.half_width_m - CAMERA_WALL_CLEARANCE_M
    straight_half = (layout.x1_m - layout.x0_m) / 2 - CAMERA_WALL_CLEARANCE_M - radius
    loop = LoopTrajectory(straight_half_m=straight_half, radius_m=radius, speed_mps=speed_mps, start_m=0.0,
                          clockwise=bool(rng.random() < 0.5), height_m=height_m,
                          bounce_amp_m=float(rng.uniform(0.0, 0.03)), pitch_amp_rad=float(rng.uniform(0.0, 0.03)),
                          yaw_amp_rad=yaw_wobble_rad,
                          motion_period_s=(float(rng.uniform(0.8, 2.0)), float(rng.uniform(1.5, 4.0)),
                                           float(rng.uniform(3.0, 8.0))),
                          motion_phase=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=3)),
                          mount_pitch_rad=mount_pitch_rad, mount_roll_rad=mount_roll_rad)
    return replace(loop, start_m=float(rng.uniform(0.0, loop.perimeter_m)))


def _wall_segments_with_doors(b: ObjectTableBuilder, layout: IndoorLayout, colour: list[float], y_centre_m: float,
                              doors: list[tuple[float, float]]) -> None:
    """One long wall along x (centre line y_centre_m) with door openings [(x_lo, x_hi), ...]."""
    height = layout.ceiling_height_m + 0.1
    x = layout.x0_m
    for lo, hi in sorted(doors) + [(layout.x1_m, layout.x1_m)]:
        if lo - x > 1e-3:
            b.add_world_box(WALL, ((lo - x) / 2, WALL_THICKNESS_M / 2, height / 2), colour, ((x + lo) / 2, y_centre_m))
        if hi > lo:
            lintel_h = height - layout.door_height_m
            b.add_world_box(WALL, ((hi - lo) / 2, WALL_THICKNESS_M / 2, lintel_h / 2), colour,
                            ((lo + hi) / 2, y_centre_m), z0_m=layout.door_height_m)
        x = max(x, hi)


def _add_furniture_piece(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, kind: int,
                         x_m: float, wall_y_m: float, inward: float, length_m: float, depth_m: float) -> None:
    """A piece of furniture centred at x, its back against the wall face at y = wall_y_m, extending
    ``depth_m`` towards ``inward`` (+1 / -1 in y). Multi-box pieces share one instance id."""
    colour = palette_colour(rng, ranges, 0.2, 0.85)
    y = wall_y_m + inward * depth_m / 2
    if kind == TABLE:
        top_z = float(rng.uniform(0.7, 0.76))
        iid = b.add_world_box(TABLE, (length_m / 2, depth_m / 2, 0.02), colour, (x_m, y), z0_m=top_z - 0.04)
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                b.add_world_box(TABLE, (0.025, 0.025, (top_z - 0.04) / 2), colour,
                                (x_m + sx * (length_m / 2 - 0.06), y + sy * (depth_m / 2 - 0.06)), instance=iid)
    elif kind == SOFA:
        iid = b.add_world_box(SOFA, (length_m / 2, depth_m / 2, 0.22), colour, (x_m, y))
        b.add_world_box(SOFA, (length_m / 2, 0.1, float(rng.uniform(0.38, 0.45))), colour,
                        (x_m, wall_y_m + inward * 0.1), instance=iid)
    else:
        height = float(rng.uniform(1.2, 2.0)) if kind == SHELF else float(rng.uniform(0.8, 1.1))
        b.add_world_box(kind, (length_m / 2, depth_m / 2, height / 2), colour, (x_m, y))


def _furniture_along_wall(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges,
                          x_lo_m: float, x_hi_m: float, wall_y_m: float, inward: float, max_depth_m: float,
                          keep_free: list[tuple[float, float]], density: float) -> None:
    """Furniture pieces along one wall between x_lo and x_hi, leaving ``keep_free`` x ranges (doors) clear."""
    kinds = (TABLE, SHELF, CABINET, SOFA) if max_depth_m >= 0.8 else (SHELF, CABINET)
    x = x_lo_m + float(rng.uniform(0.2, 1.0))
    while x < x_hi_m - 0.6:
        kind = kinds[int(rng.integers(len(kinds)))]
        length = float(rng.uniform(1.6, 2.2)) if kind == SOFA else float(rng.uniform(0.6, 1.6))
        depth = min(max_depth_m, {TABLE: float(rng.uniform(0.6, 0.8)), SOFA: float(rng.uniform(0.8, 0.9)),
                                  SHELF: float(rng.uniform(0.3, 0.45)), CABINET: float(rng.uniform(0.4, 0.6))}[kind])
        lo, hi = x, x + length
        blocked = hi > x_hi_m - 0.2 or any(hi > a - 0.4 and lo < c + 0.4 for a, c in keep_free)
        if not blocked and rng.random() < density:
            _add_furniture_piece(b, rng, ranges, kind, (lo + hi) / 2, wall_y_m, inward, length, depth)
        x = hi + float(rng.uniform(0.3, 2.0))


def _side_rooms(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, layout: IndoorLayout,
                side: float, depth_m: float, wall_colour: list[float]) -> list[tuple[float, float]]:
    """Partitions, furniture and door positions of the side rooms on one side; returns the doors."""
    half, height = layout.half_width_m, layout.ceiling_height_m + 0.1
    y_inner = side * (half + WALL_THICKNESS_M)  # face of the main wall towards the side rooms
    y_outer = side * (half + WALL_THICKNESS_M + depth_m)  # inner face of the outer wall
    doors: list[tuple[float, float]] = []
    x = layout.x0_m
    while x < layout.x1_m - 0.5:
        x_next = min(x + float(rng.uniform(3.0, 6.0)), layout.x1_m)
        if layout.x1_m - x_next < 1.5:
            x_next = layout.x1_m
        if x_next - x > 1.6 and rng.random() < 0.7:
            width = float(rng.uniform(0.8, min(1.4, x_next - x - 0.7)))
            lo = float(rng.uniform(x + 0.3, x_next - 0.3 - width))
            doors.append((lo, lo + width))
        if rng.random() < 0.6:  # a piece of furniture against the outer wall
            _furniture_along_wall(b, rng, ranges, x + 0.1, x_next - 0.1, y_outer, -side, min(depth_m - 0.8, 0.9),
                                  [], 0.8)
        if x_next < layout.x1_m:
            b.add_world_box(WALL, (0.06, depth_m / 2, height / 2), wall_colour, (x_next, (y_inner + y_outer) / 2))
        x = x_next
    return doors


def build_indoor_objects(rng: np.random.Generator, ranges: RandomizationRanges, layout: IndoorLayout,
                         walker: bool, walker_x_range_m: tuple[float, float] | None = None) -> Objects:
    """All boxes of an indoor scene (walls, ceiling, doors, furniture, optional walking person).

    ``walker_x_range_m``: x range the corridor walker covers (default: the whole corridor)."""
    b = ObjectTableBuilder()
    half, height = layout.half_width_m, layout.ceiling_height_m + 0.1
    wall_colour = palette_colour(rng, ranges, 0.55, 0.95)
    depths = {-1.0: layout.side_depth_m[0], 1.0: layout.side_depth_m[1]}
    outer_y = {side: side * (half + 2 * WALL_THICKNESS_M + depths[side]) for side in depths}
    if walker:  # first object, so its id is stable (1)
        _add_walker(b, rng, ranges, layout, walker_x_range_m)
    for side, depth in depths.items():
        doors = _side_rooms(b, rng, ranges, layout, side, depth, wall_colour)
        _wall_segments_with_doors(b, layout, wall_colour, side * (half + WALL_THICKNESS_M / 2), doors)
        b.add_world_box(WALL, ((layout.x1_m - layout.x0_m) / 2 + WALL_THICKNESS_M, WALL_THICKNESS_M / 2, height / 2),
                        wall_colour, ((layout.x0_m + layout.x1_m) / 2, outer_y[side] - side * WALL_THICKNESS_M / 2))
        if layout.kind == "room":
            _furniture_along_wall(b, rng, ranges, layout.x0_m, layout.x1_m, side * half, -side,
                                  ROOM_FURNITURE_DEPTH_M, doors, 0.7)
        elif side < 0:  # corridor: shallow pieces on the right-hand wall only (the walker uses the left)
            _furniture_along_wall(b, rng, ranges, layout.x0_m, layout.x1_m, side * half, -side,
                                  CORRIDOR_FURNITURE_DEPTH_M, doors, 0.35)
    y_lo, y_hi = outer_y[-1.0], outer_y[1.0]
    for end, sign in ((layout.x0_m, -1.0), (layout.x1_m, 1.0)):
        b.add_world_box(WALL, (WALL_THICKNESS_M / 2, (y_hi - y_lo) / 2, height / 2), wall_colour,
                        (end + sign * WALL_THICKNESS_M / 2, (y_lo + y_hi) / 2))
    if layout.kind == "room":  # shelves against the end walls of the room
        for end, inward in ((layout.x0_m, 1.0), (layout.x1_m, -1.0)):
            if rng.random() < 0.6:
                length, depth = float(rng.uniform(0.8, min(2.0, layout.width_m - 2.2))), float(rng.uniform(0.3, 0.45))
                y = float(rng.uniform(-half + 1.0 + length / 2, half - 1.0 - length / 2))  # length < W - 2.2
                b.add_world_box(SHELF, (depth / 2, length / 2, float(rng.uniform(0.6, 1.0))),
                                palette_colour(rng, ranges, 0.2, 0.85), (end + inward * depth / 2, y))
    b.add_world_box(CEILING, ((layout.x1_m - layout.x0_m) / 2 + 0.6, (y_hi - y_lo) / 2 + 0.6, 0.1),
                    palette_colour(rng, ranges, 0.7, 0.95), ((layout.x0_m + layout.x1_m) / 2, (y_lo + y_hi) / 2),
                    z0_m=layout.ceiling_height_m)
    return b.build()


def _add_walker(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, layout: IndoorLayout,
                x_range_m: tuple[float, float] | None) -> int:
    """A person walking back and forth at 0.8-1.4 m/s in a lane the camera path never enters."""
    half_extent = (float(rng.uniform(0.18, 0.25)), float(rng.uniform(0.2, 0.25)), float(rng.uniform(0.8, 0.92)))
    speed = float(rng.uniform(0.8, 1.4))
    if layout.kind == "room":
        side = 1.0 if rng.random() < 0.5 else -1.0
        lane_y = side * (layout.half_width_m - ROOM_WALKER_WALL_M)
        lo, hi = layout.x0_m + 1.3, layout.x1_m - 1.3
    else:
        lane_y = layout.half_width_m - CORRIDOR_WALKER_WALL_M
        lo, hi = x_range_m if x_range_m is not None else (layout.x0_m + 1.0, layout.x1_m - 1.0)
        lo, hi = max(lo, layout.x0_m + 1.0), min(hi, layout.x1_m - 1.0)
    start = float(rng.uniform(lo, hi))
    towards_hi = rng.random() < 0.5
    walk_s = max((hi - start) if towards_hi else (start - lo), 0.5) / speed
    velocity = (speed if towards_hi else -speed, 0.0)
    return b.add_world_box(PEDESTRIAN, half_extent, palette_colour(rng, ranges, 0.2, 0.85), (start, lane_y),
                           yaw_rad=0.0 if towards_hi else math.pi, velocity_mps=velocity, pingpong_s=walk_s)
