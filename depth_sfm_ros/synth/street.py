"""Randomised street and intersection layouts (numpy only); the classic street is scene.build_objects.

Lateral layout (offset d from the road centre line, positive = left), as in :mod:`.scene`:
lanes at +-1.75 / +-5.25 m, parked cars at +-8.6 m, poles and trees at +-10.3 m, pedestrians
walking at +-10.9 m and standing at +-11.6 m, facades at 12 m + setback (setback from the
profile's ``facade_setback_m``), bushes in the forecourt between 12 m and the facade.

Intersections: straight cross streets along world y at x = x_c (road band |x - x_c| < 10 m),
cross traffic at x_c +- 1.75 / 5.25 m moving along y, pedestrians walking back and forth on the
cross-street pavements, buildings lining the cross street. Street furniture leaves the crossing
free. Cross-traffic cars that would be inside the crossing while the camera is within 40 m of it
are dropped, so the camera never drives through a car (cars on different roads may still overlap
elsewhere, in the distance: ground truth stays exact either way, it is all one ray cast).
"""
from __future__ import annotations

import math

import numpy as np

from .randomization import RandomizationRanges, draw_interval, palette_colour, vegetation_colour
from .scene import (BOX, BUILDING, BUSH, CAR, CROWN, FACADE_D, LANE_CAMERA_D, LANE_SAME_D, LANES_ONCOMING_D,
                    PARKING_D, PEDESTRIAN, POLE, POLE_D, TRUNK, ObjectTableBuilder, Objects, Road)

ROAD_HALF_WIDTH_M = 10.0  # asphalt band of main and cross streets, |d| < 10 m
CROSSING_CLEAR_M = 12.0  # street furniture keeps |x - x_c| >= this
WALK_D = 10.9  # +- 0.08 jitter: walking boxes stay within 10.55..11.25 m
STAND_D = 11.6  # standing boxes within 11.3..11.9 m


def crossing_positions(rng: np.random.Generator, x_min_m: float, x_max_m: float) -> list[float]:
    """World x (m) of the cross streets: the first 25-60 m ahead of the start, then every 80-180 m."""
    xs, x = [], float(rng.uniform(25.0, 60.0))
    while x < x_max_m:
        if x > x_min_m:
            xs.append(x)
        x += float(rng.uniform(80.0, 180.0))
    return xs


def _near_crossing(x_lo_m: float, x_hi_m: float, crossings_x_m: list[float]) -> float | None:
    """The first crossing whose clear zone overlaps [x_lo, x_hi], or None."""
    for xc in crossings_x_m:
        if x_hi_m > xc - CROSSING_CLEAR_M and x_lo_m < xc + CROSSING_CLEAR_M:
            return xc
    return None


def _car_half_extent(rng: np.random.Generator) -> tuple[float, float, float]:
    return float(rng.uniform(1.9, 2.5)), float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.7, 0.9))


def _add_facades(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, side: float,
                 x_min_m: float, x_max_m: float, crossings_x_m: list[float]) -> None:
    """Buildings of varied height and setback with gaps; bushes in forecourts deeper than 1.2 m."""
    x = x_min_m + float(rng.uniform(0.0, 10.0))
    while x < x_max_m:
        length = float(rng.uniform(8.0, 26.0))
        xc = _near_crossing(x, x + length, crossings_x_m)
        if xc is not None:
            x = xc + CROSSING_CLEAR_M
            continue
        depth = float(rng.uniform(8.0, 14.0))
        height = draw_interval(rng, ranges.building_height_m)
        setback = draw_interval(rng, ranges.facade_setback_m)
        b.add_road_box(BUILDING, (length / 2, depth / 2, height / 2), palette_colour(rng, ranges, 0.35, 0.85),
                       x + length / 2, lane_d_m=side * (FACADE_D + setback + depth / 2))
        if setback >= 1.2:
            for k in range(int(rng.integers(1, 4))):
                bush_half = (float(rng.uniform(0.4, 1.2)), min(float(rng.uniform(0.3, 0.7)), setback / 2 - 0.1),
                             float(rng.uniform(0.25, 0.6)))
                b.add_road_box(BUSH, bush_half, vegetation_colour(rng), x + float(rng.uniform(0.1, 0.9)) * length,
                               lane_d_m=side * (FACADE_D + setback / 2))
        x += length + (float(rng.uniform(3.0, 12.0)) if rng.random() < 0.35 else float(rng.uniform(0.0, 0.6)))


def _add_parked(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, side: float,
                x_min_m: float, x_max_m: float, crossings_x_m: list[float]) -> None:
    """Parked cars (75 %) and boxes along the kerb."""
    x = x_min_m + float(rng.uniform(0.0, 15.0))
    while x < x_max_m:
        if _near_crossing(x - 2.5, x + 2.5, crossings_x_m) is None:
            if rng.random() < 0.75:
                b.add_road_box(CAR, _car_half_extent(rng), palette_colour(rng, ranges, 0.15, 0.9), x,
                               lane_d_m=side * (PARKING_D + float(rng.uniform(-0.3, 0.3))))
            else:
                b.add_road_box(BOX, tuple(float(v) for v in rng.uniform(0.4, 1.0, size=3)),
                               palette_colour(rng, ranges, 0.2, 0.7), x, lane_d_m=side * (PARKING_D + 0.8))
        x += float(rng.uniform(7.0, 25.0))


def add_tree(b: ObjectTableBuilder, rng: np.random.Generator, x0_m: float, lane_d_m: float) -> int:
    """A tree on the road model: trunk (2-3.2 m) and crown boxes sharing one instance id."""
    trunk_h = float(rng.uniform(2.0, 3.2))
    iid = b.add_road_box(TRUNK, (float(rng.uniform(0.12, 0.22)), float(rng.uniform(0.12, 0.22)), trunk_h / 2),
                         [0.3, 0.22, 0.15], x0_m, lane_d_m=lane_d_m)
    crown_half = (float(rng.uniform(1.0, 2.2)), float(rng.uniform(1.0, 2.2)), float(rng.uniform(1.0, 2.0)))
    b.add_road_box(CROWN, crown_half, vegetation_colour(rng), x0_m, lane_d_m=lane_d_m, z0_m=trunk_h - 0.3,
                   instance=iid)
    return iid


def _add_poles_and_trees(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges,
                         side: float, x_min_m: float, x_max_m: float, crossings_x_m: list[float]) -> None:
    x = x_min_m + float(rng.uniform(0.0, 12.0))
    while x < x_max_m:
        if _near_crossing(x - 2.2, x + 2.2, crossings_x_m) is None:
            if rng.random() < 0.45:
                b.add_road_box(POLE, (0.12, 0.12, float(rng.uniform(2.5, 4.0))), palette_colour(rng, ranges, 0.2, 0.5),
                               x, lane_d_m=side * POLE_D)
            else:
                add_tree(b, rng, x, side * POLE_D)
        x += float(rng.uniform(8.0, 25.0))


def _pedestrian_half_extent(rng: np.random.Generator) -> tuple[float, float, float]:
    return float(rng.uniform(0.18, 0.28)), float(rng.uniform(0.2, 0.27)), float(rng.uniform(0.8, 0.95))


def _add_pavement_pedestrians(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges,
                              side: float, x_min_m: float, x_max_m: float, duration_s: float) -> None:
    """Pedestrians walking along the pavement at 0.8-1.8 m/s either way, and some standing still."""
    x = x_min_m - 2.0 * duration_s + float(rng.uniform(0.0, 10.0))
    while x < x_max_m + 2.0 * duration_s:
        half = _pedestrian_half_extent(rng)
        colour = palette_colour(rng, ranges, 0.2, 0.85)
        if rng.random() < 0.7:
            direction = 1.0 if rng.random() < 0.5 else -1.0
            b.add_road_box(PEDESTRIAN, half, colour, x, speed_mps=direction * float(rng.uniform(0.8, 1.8)),
                           lane_d_m=side * (WALK_D + float(rng.uniform(-0.08, 0.08))),
                           yaw_offset_rad=0.0 if direction > 0 else math.pi)
        else:
            b.add_road_box(PEDESTRIAN, half, colour, x, lane_d_m=side * STAND_D,
                           yaw_offset_rad=float(rng.uniform(-0.3, 0.3)))
        x += float(rng.uniform(6.0, 30.0))


def _add_traffic(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, x_min_m: float,
                 x_max_m: float, duration_s: float, camera_speed_mps: float) -> None:
    """Same-direction and oncoming lanes populated for the whole duration (as the classic street)."""
    lanes = [(LANE_SAME_D, 1.0)] + [(d, -1.0) for d in LANES_ONCOMING_D]
    for d, direction in lanes:
        lo = x_min_m - 14.0 * duration_s if direction > 0 else x_min_m
        hi = x_max_m if direction > 0 else x_max_m + 14.0 * duration_s
        x = lo + float(rng.uniform(0.0, 20.0))
        while x < hi:
            speed = float(rng.uniform(0.6, 1.3)) * camera_speed_mps if direction > 0 else -float(rng.uniform(6.0, 13.0))
            b.add_road_box(CAR, _car_half_extent(rng), palette_colour(rng, ranges, 0.15, 0.9), x, speed_mps=speed,
                           lane_d_m=d + float(rng.uniform(-0.2, 0.2)), yaw_offset_rad=0.0 if direction > 0 else math.pi)
            x += float(rng.uniform(25.0, 70.0))


def _inside_crossing_times(y0_m: float, speed_mps: float, yc_m: float) -> tuple[float, float]:
    """Time interval (s) during which a car at y0 + speed t (|speed| > 0) is within 12 m of y = yc."""
    t1, t2 = (yc_m - 12.0 - y0_m) / speed_mps, (yc_m + 12.0 - y0_m) / speed_mps
    return min(t1, t2), max(t1, t2)


def _add_cross_street(b: ObjectTableBuilder, rng: np.random.Generator, ranges: RandomizationRanges, road: Road,
                      xc_m: float, duration_s: float, camera_near_s: tuple[float, float] | None) -> None:
    """Cross traffic, pavement pedestrians and buildings of the cross street at x = xc_m."""
    yc = float(road.y(xc_m))
    reach = 150.0 + 13.0 * duration_s
    for lane_x, direction in ((-5.25, 1.0), (-1.75, 1.0), (1.75, -1.0), (5.25, -1.0)):
        y = yc - reach + float(rng.uniform(0.0, 30.0))
        while y < yc + reach:
            speed = direction * float(rng.uniform(6.0, 13.0))
            half, colour = _car_half_extent(rng), palette_colour(rng, ranges, 0.15, 0.9)
            enter, leave = _inside_crossing_times(y, speed, yc)
            clear = camera_near_s is None or leave < camera_near_s[0] or enter > camera_near_s[1]
            if clear:
                b.add_world_box(CAR, half, colour, (xc_m + lane_x + float(rng.uniform(-0.2, 0.2)), y),
                                yaw_rad=direction * math.pi / 2, velocity_mps=(0.0, speed))
            y += float(rng.uniform(25.0, 70.0))
    for side_x in (-1.0, 1.0):
        for side_y in (-1.0, 1.0):
            for _ in range(int(rng.integers(0, 3))):  # pedestrians on the cross-street pavements
                start = yc + side_y * float(rng.uniform(13.0, 20.0))
                walk_s = float(rng.uniform(8.0, 25.0))
                speed = float(rng.uniform(0.8, 1.6))
                b.add_world_box(PEDESTRIAN, _pedestrian_half_extent(rng), palette_colour(rng, ranges, 0.2, 0.85),
                                (xc_m + side_x * WALK_D, start), yaw_rad=side_y * math.pi / 2,
                                velocity_mps=(0.0, side_y * speed), pingpong_s=walk_s)
            y = CROSSING_CLEAR_M + float(rng.uniform(0.0, 4.0))
            while y < 150.0:  # buildings lining the cross street
                length = float(rng.uniform(8.0, 26.0))
                depth = float(rng.uniform(8.0, 14.0))
                setback = draw_interval(rng, ranges.facade_setback_m)
                height = draw_interval(rng, ranges.building_height_m)
                b.add_world_box(BUILDING, (depth / 2, length / 2, height / 2), palette_colour(rng, ranges, 0.35, 0.85),
                                (xc_m + side_x * (FACADE_D + setback + depth / 2), yc + side_y * (y + length / 2)))
                y += length + float(rng.uniform(0.0, 6.0))


def build_street_objects(rng: np.random.Generator, ranges: RandomizationRanges, road: Road, x_min_m: float,
                         x_max_m: float, duration_s: float, camera_speed_mps: float, lead_gap_m: float,
                         crossings_x_m: list[float], camera_x_of_t: np.ndarray | None = None,
                         times_s: np.ndarray | None = None) -> Objects:
    """All boxes of a randomised street (with cross streets at ``crossings_x_m``, may be empty).

    ``camera_x_of_t`` / ``times_s``: camera world x (m) sampled at times (s) over the sequence, used
    to keep cross traffic out of a crossing while the camera is within 40 m of it.
    The lead car (moving with the camera) is instance 1."""
    b = ObjectTableBuilder()
    b.add_road_box(CAR, (2.1, 0.9, 0.75), palette_colour(rng, ranges, 0.3, 0.85), 0.0, lane_d_m=LANE_CAMERA_D,
                   follows_camera=True, gap_m=lead_gap_m)
    for side in (-1.0, 1.0):
        _add_facades(b, rng, ranges, side, x_min_m, x_max_m, crossings_x_m)
        _add_parked(b, rng, ranges, side, x_min_m, x_max_m, crossings_x_m)
        _add_poles_and_trees(b, rng, ranges, side, x_min_m, x_max_m, crossings_x_m)
        _add_pavement_pedestrians(b, rng, ranges, side, x_min_m, x_max_m, duration_s)
    _add_traffic(b, rng, ranges, x_min_m, x_max_m, duration_s, camera_speed_mps)
    for xc in crossings_x_m:
        near = None
        if camera_x_of_t is not None and times_s is not None:
            close = np.abs(camera_x_of_t - xc) < 40.0 + lead_gap_m
            if close.any():
                near = (float(times_s[close].min()) - 1.0, float(times_s[close].max()) + 1.0)
        _add_cross_street(b, rng, ranges, road, xc, duration_s, near)
    return b.build()
