"""Surface appearance and lighting of the randomised profiles (numpy only).

Every colour is a function of the surface point only: boxes are textured in their own box-frame
face coordinates (so textures move with moving objects), the ground / floor in world x, y, the
sky in world ray direction. Pattern families (:data:`.texture.FAMILIES`) at a per-surface period,
multi-octave value-noise grain on top, Lambertian light from one direction plus a hemispheric
ambient term (normalised so a typical surface keeps its albedo), and a slow per-frame flicker of
the direct light. The radiance returned here is what the photometric chain
(:mod:`.photometric`) turns into the camera image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose

from . import texture
from .randomization import LightingDraw, RandomizationRanges, draw_interval, palette_colour
from .scene import BUILDING, BUSH, CAR, CROWN, PEDESTRIAN, POLE, SHELF, TRUNK, WALL, Objects, Road

NATURAL_KINDS = (TRUNK, CROWN, BUSH)  # no man-made pattern, strong grain, fixed colours
GLASS_RGB = np.array([0.16, 0.2, 0.28], dtype=np.float32)
SKIN_RGB = np.array([0.78, 0.6, 0.5], dtype=np.float32)
PAINT_RGB = np.array([0.85, 0.85, 0.82], dtype=np.float32)
ROAD_HALF_WIDTH_M = 10.0


@dataclass
class BoxLook:
    """Per-box surface look; arrays have N + 1 rows indexed by box row + 1 (row 0 unused).

    family_id (int8, index into texture.FAMILIES), period_m, pattern_contrast, grain_contrast
    (float32), colour_a / colour_b (N + 1, 3) float32 (pattern blends a -> b), seed (int64)."""

    family_id: np.ndarray
    period_m: np.ndarray
    pattern_contrast: np.ndarray
    grain_contrast: np.ndarray
    colour_a: np.ndarray
    colour_b: np.ndarray
    seed: np.ndarray


@dataclass(frozen=True)
class GroundLook:
    """Ground / floor look: pattern family and period (m) of the pavement or floor, its colours,
    the asphalt colour (streets), lane-paint colour and the grain contrast."""

    family_id: int
    period_m: float
    pattern_contrast: float
    grain_contrast: float
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    asphalt: tuple[float, float, float]
    seed: int


def _family_ids(ranges: RandomizationRanges) -> np.ndarray:
    return np.array([texture.FAMILIES.index(name) for name in ranges.texture_families], dtype=np.int8)


def build_box_look(rng: np.random.Generator, objects: Objects, ranges: RandomizationRanges) -> BoxLook:
    """Draw the look of every box: pattern family from the profile, log-uniform period, contrasts;
    natural kinds (trunk, crown, bush) get grain only; cars a faint pattern (paint)."""
    n = len(objects) + 1
    allowed = _family_ids(ranges)
    family = allowed[rng.integers(len(allowed), size=n)]
    period = np.array([draw_interval(rng, ranges.texture_period_m, log=True) for _ in range(n)], dtype=np.float32)
    pattern_c = rng.uniform(0.15, 0.6, size=n).astype(np.float32)
    grain_c = rng.uniform(0.1, 0.45, size=n).astype(np.float32)
    colour_a = np.concatenate([np.zeros((1, 3), np.float32), objects.colour.astype(np.float32)])
    second = np.array([palette_colour(rng, ranges, 0.15, 0.9) for _ in range(n)], dtype=np.float32)
    darker = colour_a * rng.uniform(0.45, 0.8, size=(n, 1)).astype(np.float32)
    colour_b = np.where(rng.random(size=(n, 1)) < 0.5, second, darker)
    kind = np.concatenate([[0], objects.kind])
    natural = np.isin(kind, NATURAL_KINDS)
    pattern_c[natural] = 0.0
    grain_c[natural] = rng.uniform(0.6, 0.9, size=int(natural.sum()))
    cars = kind == CAR
    pattern_c[cars] = rng.uniform(0.03, 0.12, size=int(cars.sum()))
    people = kind == PEDESTRIAN
    colour_b[people] = second[people]  # trousers differ from the top
    seed = (np.arange(n, dtype=np.int64) * 1013 + int(rng.integers(1, 2**31 - 1))) % (2**31 - 1)
    walls = np.flatnonzero(kind == WALL)
    if walls.size:  # all walls of a building share one look (wallpaper / plaster / bricks)
        for array in (family, period, pattern_c, grain_c, colour_b, seed):
            array[walls] = array[walls[0]]
    return BoxLook(family_id=family, period_m=period, pattern_contrast=pattern_c, grain_contrast=grain_c,
                   colour_a=colour_a, colour_b=colour_b.astype(np.float32), seed=seed)


def build_ground_look(rng: np.random.Generator, ranges: RandomizationRanges, indoor: bool) -> GroundLook:
    """Pavement (street) or floor (indoor) pattern and colours; asphalt is a neutral grey."""
    allowed = _family_ids(ranges)
    grey = float(rng.uniform(0.2, 0.45))
    return GroundLook(family_id=int(allowed[rng.integers(len(allowed))]),
                      period_m=draw_interval(rng, ranges.texture_period_m, log=True),
                      pattern_contrast=float(rng.uniform(0.2, 0.6)), grain_contrast=float(rng.uniform(0.15, 0.5)),
                      colour_a=tuple(palette_colour(rng, ranges, 0.35 if indoor else 0.45, 0.85)),
                      colour_b=tuple(palette_colour(rng, ranges, 0.2, 0.7)),
                      asphalt=(grey, grey, grey * float(rng.uniform(1.0, 1.08))),
                      seed=int(rng.integers(1, 2**31 - 1)))


def normal_table(yaws: np.ndarray) -> np.ndarray:
    """World normals (N + 1, 7, 3) float32 indexed by [box row + 1, face]: faces 0..5 of each box
    (+x, -x, +y, -y, +z, -z in the box frame, rotated by the box's yaw), 6 = ground (+z)."""
    n_b = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [0, 0, 1]],
                   dtype=np.float64)
    yaw = np.concatenate([[0.0], yaws])[:, None]
    c, s = np.cos(yaw), np.sin(yaw)
    table = np.stack([c * n_b[:, 0] - s * n_b[:, 1], s * n_b[:, 0] + c * n_b[:, 1],
                      np.broadcast_to(n_b[:, 2], c.shape[:1] + n_b[:, 2].shape)], axis=-1)
    table[:, 6] = (0.0, 0.0, 1.0)
    return table.astype(np.float32)


def _lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a + (b - a) * w


def pattern_albedo(colour_a: np.ndarray, colour_b: np.ndarray, pattern: np.ndarray, pattern_contrast: np.ndarray,
                   grain: np.ndarray, grain_contrast: np.ndarray) -> np.ndarray:
    """Albedo (n, 3): colour a where the pattern is 1, towards colour b by ``pattern_contrast`` where
    it is 0, times the grain (fbm in [0, 1]) scaled by ``grain_contrast``."""
    mix = (pattern_contrast * (1.0 - pattern))[:, None]
    return _lerp(colour_a, colour_b, mix) * (1.0 + grain_contrast * (2.0 * grain - 1.0))[:, None]


def sky_radiance(dirs_world: np.ndarray, lighting: LightingDraw, seed: int) -> np.ndarray:
    """Sky colour (n, 3) of unit world directions (n, 3): a horizon-to-zenith gradient between a clear
    and an overcast palette plus value-noise clouds in direction space."""
    elev = np.clip(dirs_world[:, 2], -0.2, 1.0).astype(np.float32)
    azim = np.arctan2(dirs_world[:, 1], dirs_world[:, 0])
    clouds = texture.value_noise(azim * 8.0, elev * 25.0, 1.0, seed)
    up = np.sqrt(np.clip(elev, 0.0, 1.0))[:, None]
    clear = _lerp(np.array([0.72, 0.8, 0.92], np.float32), np.array([0.32, 0.5, 0.88], np.float32), up)
    overcast = _lerp(np.array([0.8, 0.8, 0.82], np.float32), np.array([0.66, 0.68, 0.72], np.float32), up)
    base = _lerp(clear, overcast, np.float32(lighting.overcast))
    return base + (lighting.cloud_contrast * (clouds - 0.5))[:, None].astype(np.float32)


def street_ground_albedo(x_m: np.ndarray, y_m: np.ndarray, road: Road, crossings_x_m: list[float],
                         footprint_m: np.ndarray, footprint_lat_m: np.ndarray, grain: np.ndarray,
                         look: GroundLook) -> np.ndarray:
    """Ground albedo (n, 3): asphalt on the main road and the cross streets, patterned pavement
    elsewhere, lane paint (centre dashes, lane dashes, edge lines) and zebra crossings."""
    lateral = (y_m - road.y(x_m)).astype(np.float32)
    on_main = texture.band(lateral, 0.0, ROAD_HALF_WIDTH_M, footprint_lat_m)
    on_cross = np.zeros_like(on_main)
    for xc in crossings_x_m:
        on_cross = np.maximum(on_cross, texture.band(x_m - xc, 0.0, ROAD_HALF_WIDTH_M, footprint_lat_m))
    on_road = np.maximum(on_main, on_cross)[:, None]
    n = x_m.shape[0]
    pattern = texture.family_pattern(np.full(n, look.family_id, np.int8), x_m, y_m,
                                     np.full(n, look.period_m, np.float32), footprint_m, np.full(n, look.seed))
    paving = pattern_albedo(np.asarray(look.colour_a, np.float32), np.asarray(look.colour_b, np.float32), pattern,
                            np.float32(look.pattern_contrast), grain, np.float32(look.grain_contrast))
    asphalt = np.asarray(look.asphalt, np.float32) * (0.6 + 0.8 * grain)[:, None]
    colour = on_road * asphalt + (1.0 - on_road) * paving
    paint = np.maximum.reduce([
        texture.band(lateral, 0.0, 0.08, footprint_lat_m) * texture.stripes(x_m, 6.0, 0.5, footprint_m),
        texture.band(np.abs(lateral), 3.5, 0.07, footprint_lat_m) * texture.stripes(x_m + 1.3, 9.0, 0.35, footprint_m),
        texture.band(np.abs(lateral), 7.2, 0.1, footprint_lat_m)]) * (1.0 - on_cross)
    for xc in crossings_x_m:
        across = (x_m - xc).astype(np.float32)
        along = (y_m - road.y(xc)).astype(np.float32)
        cross_paint = np.maximum(
            texture.band(across, 0.0, 0.08, footprint_lat_m) * texture.stripes(along, 6.0, 0.5, footprint_m),
            texture.band(np.abs(across), 7.2, 0.1, footprint_lat_m)) * (1.0 - on_main)
        zebra = texture.band(np.abs(across), 12.5, 1.5, footprint_m) \
            * texture.band(lateral, 0.0, 7.2, footprint_lat_m) * texture.stripes(lateral, 1.0, 0.5, footprint_lat_m)
        paint = np.maximum.reduce([paint, cross_paint, zebra])
    paint = paint[:, None]
    return paint * PAINT_RGB * (0.85 + 0.3 * grain)[:, None] + (1.0 - paint) * colour


def floor_albedo(x_m: np.ndarray, y_m: np.ndarray, footprint_m: np.ndarray, grain: np.ndarray,
                 look: GroundLook) -> np.ndarray:
    """Indoor floor albedo (n, 3): the floor pattern (planks, tiles, ...) in world x, y with grain."""
    n = x_m.shape[0]
    pattern = texture.family_pattern(np.full(n, look.family_id, np.int8), x_m, y_m,
                                     np.full(n, look.period_m, np.float32), footprint_m, np.full(n, look.seed))
    return pattern_albedo(np.asarray(look.colour_a, np.float32), np.asarray(look.colour_b, np.float32), pattern,
                          np.float32(look.pattern_contrast), grain, np.float32(look.grain_contrast))


def box_albedo(rows: np.ndarray, kind: np.ndarray, face: np.ndarray, a_m: np.ndarray, b_m: np.ndarray,
               footprint_m: np.ndarray, grain: np.ndarray, look: BoxLook, half_height_m: np.ndarray) -> np.ndarray:
    """Albedo (n, 3) of box pixels: ``rows`` box row + 1, ``kind`` box kinds, ``face`` 0..5, (a, b) face
    coordinates in metres (b = height above the box bottom on vertical faces), ``half_height_m`` of the box."""
    pattern = texture.family_pattern(look.family_id[rows], a_m, b_m, look.period_m[rows], footprint_m, look.seed[rows])
    colour = pattern_albedo(look.colour_a[rows], look.colour_b[rows], pattern, look.pattern_contrast[rows], grain,
                            look.grain_contrast[rows])
    vertical = face < 4
    height = 2.0 * half_height_m
    windows = ((kind == BUILDING) & vertical) * texture.band(b_m, height / 2 + 0.5, np.maximum(height / 2 - 2.0, 0.0),
                                                               footprint_m) \
        * texture.stripes(a_m + 0.7, 3.1, 0.5, footprint_m) * texture.stripes(b_m, 3.2, 0.45, footprint_m)
    car_glass = ((kind == CAR) & vertical) * texture.band(b_m / half_height_m, 1.4, 0.35, footprint_m / half_height_m)
    glass = np.maximum(windows, car_glass)[:, None]
    colour = glass * GLASS_RGB * (0.6 + 0.9 * grain)[:, None] + (1.0 - glass) * colour
    people = (kind == PEDESTRIAN) & vertical
    if people.any():
        legs = texture.band(b_m[people], 0.0, 0.45 * height[people], footprint_m[people])[:, None]
        head = texture.band(b_m[people], height[people], 0.12 * height[people], footprint_m[people])[:, None]
        col = legs * look.colour_b[rows[people]] + (1.0 - legs) * colour[people]
        colour[people] = head * SKIN_RGB + (1.0 - head) * col
    boards = ((kind == SHELF) & vertical) * (1.0 - texture.stripes(b_m, 0.35, 0.88, footprint_m))
    poles = (kind == POLE) * (0.3 * (1.0 - texture.stripes(b_m, 0.5, 0.5, footprint_m)))
    return colour * (1.0 - 0.45 * boards - poles)[:, None]


def direct_light(normals: np.ndarray, lighting: LightingDraw, t_s: float) -> np.ndarray:
    """Light factor (n,) of world normals (n, 3): hemispheric ambient + Lambertian directional light
    with the flicker at time t, normalised by (ambient + 0.5 sun) so typical surfaces keep their albedo."""
    sun = np.clip(normals @ lighting.sun_dir_world.astype(np.float32), 0.0, 1.0)
    ambient = lighting.ambient * (0.8 + 0.2 * normals[:, 2])
    light = ambient + lighting.sun_intensity * lighting.intensity_scale(t_s) * sun
    return (light / (lighting.ambient + 0.5 * lighting.sun_intensity)).astype(np.float32)


@dataclass
class ShadingContext:
    """What the randomised shader needs besides the cast buffers of one frame.

    rays_cam (H, W, 3) float32 camera rays with z = 1; ray_len (H, W) their lengths; crossings_x_m:
    cross streets (world x); indoor: floor instead of street ground; sky_seed: cloud noise seed."""

    intrinsics: Intrinsics
    rays_cam: np.ndarray
    ray_len: np.ndarray
    objects: Objects
    box_look: BoxLook
    ground_look: GroundLook
    lighting: LightingDraw
    road: Road
    crossings_x_m: list[float]
    indoor: bool
    sky_seed: int


def shade(ctx: ShadingContext, T_wc: Pose, t_s: float, depth: np.ndarray, box: np.ndarray, face: np.ndarray,
          coords: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """Radiance (H, W, 3) float32 (about [0, 1.5]) from the cast buffers: depth (H, W) (inf = sky),
    box (H, W) box row + 1 (0 = ground), face (H, W) 0..6, coords (H, W, 2) surface coordinates (m),
    yaws (N,) of the boxes at time t."""
    K = ctx.intrinsics
    image = np.empty((K.height, K.width, 3), dtype=np.float32)
    rays_w = ctx.rays_cam @ T_wc.R.T.astype(np.float32)
    sky = ~np.isfinite(depth)
    if sky.any():
        dirs = rays_w[sky] / np.linalg.norm(rays_w[sky], axis=1, keepdims=True)
        image[sky] = sky_radiance(dirs, ctx.lighting, ctx.sky_seed)
    surf = ~sky
    d, rows, f, ab = depth[surf], box[surf], face[surf], coords[surf]
    normals = normal_table(yaws)[rows, f]
    ray_len = ctx.ray_len[surf]
    dirs = rays_w[surf] / ray_len[:, None]
    cos_inc = np.clip(np.abs(np.sum(normals * dirs, axis=1)), 0.08, 1.0)
    footprint = (d * ray_len / K.fx / cos_inc).astype(np.float32)
    ground = f == 6
    seed = np.where(ground, ctx.ground_look.seed, ctx.box_look.seed[rows])
    grain = texture.fbm(ab[:, 0], ab[:, 1], seed, footprint)
    colour = np.empty((d.size, 3), dtype=np.float32)
    if ground.any():
        x, y, g, fp = ab[ground, 0], ab[ground, 1], grain[ground], footprint[ground]
        if ctx.indoor:
            colour[ground] = floor_albedo(x, y, fp, g, ctx.ground_look)
        else:
            fp_lat = (d[ground] * ray_len[ground] / K.fx).astype(np.float32)
            colour[ground] = street_ground_albedo(x, y, ctx.road, ctx.crossings_x_m, fp, fp_lat, g, ctx.ground_look)
    boxes = ~ground
    if boxes.any():
        r = rows[boxes]
        colour[boxes] = box_albedo(r, ctx.objects.kind[r - 1], f[boxes], ab[boxes, 0], ab[boxes, 1], footprint[boxes],
                                   grain[boxes], ctx.box_look, ctx.objects.half_extent_m[r - 1, 2].astype(np.float32))
    image[surf] = colour * direct_light(normals, ctx.lighting, t_s)[:, None]
    return image
