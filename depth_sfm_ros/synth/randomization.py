"""Domain randomisation of ``depth-sfm synth``: the ranges table and the seeded per-sequence draws.

Profiles (``SynthConfig.randomize`` / ``--randomize``):

* ``none``: the classic street (one look, KITTI-like camera); reproduces the renderer's output of
  before randomisation existed bit for bit.
* ``train``: every parameter drawn from :data:`TRAIN_RANGES`.
* ``heldout``: drawn from :data:`HELDOUT_RANGES`; the parameters in :data:`HELDOUT_DISJOINT` use
  ranges that training never sees (extreme fields of view, tall mounts, steep pitch and roll,
  other aspect ratios, other texture families, a saturated colour palette, deep facade setbacks,
  wide rooms, heavy JPEG), so an evaluation on ``heldout`` measures generalisation, not memory.
  The other parameters share the training ranges.

Each range is a union of closed intervals ``((lo, hi), ...)``; a draw is uniform over the union
(log-uniform for ``texture_period_m``). Per sequence (seed), :func:`draw_scene_randomization`
draws the scene family, the camera, the lighting and the photometric chain once; per-object
parameters (colours, setbacks, heights, texture family and period) are drawn by the layout
builders from the same table; per-frame variation (exposure jitter, light flicker, sensor noise,
JPEG quality jitter) is seeded by (seed, profile, frame index), so any frame renders alone.

:func:`ranges_table_markdown` prints the table quoted in the README.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from depth_sfm_ros.geometry import Intrinsics

Interval = tuple[float, float]
Intervals = tuple[Interval, ...]  # a union of closed intervals

PROFILES = ("none", "train", "heldout")
SCENE_FAMILIES = ("street", "intersection", "indoor")
SCENE_CHOICES = SCENE_FAMILIES + ("mixed",)
INDOOR_LAYOUTS = ("room", "corridor")
# scene family probabilities of --scene mixed (street, intersection, indoor)
MIXED_FAMILY_PROBABILITIES = (0.4, 0.3, 0.3)
KITTI_ASPECT = 1242.0 / 375.0


@dataclass(frozen=True)
class RandomizationRanges:
    """One randomisation profile: the range of every randomised parameter (see :data:`FIELD_DOC`)."""

    # camera
    hfov_deg: Intervals
    aspect_ratios: tuple[float, ...]
    camera_height_m: Intervals
    pitch_down_deg: Intervals
    roll_deg: Intervals
    # motion
    street_speed_mps: Intervals
    indoor_speed_mps: Intervals
    indoor_yaw_wobble_deg: Intervals
    # layout
    facade_setback_m: Intervals
    building_height_m: Intervals
    room_width_m: Intervals
    corridor_width_m: Intervals
    ceiling_height_m: Intervals
    # appearance
    texture_families: tuple[str, ...]
    texture_period_m: Intervals
    palette_saturation: Intervals
    sun_elevation_deg: Intervals
    sun_intensity: Intervals
    ambient: Intervals
    light_flicker: Intervals
    # photometric chain (camera / ISP)
    exposure_ev: Intervals
    exposure_jitter_ev: Intervals
    gamma: Intervals
    white_balance_gain: Intervals
    shot_noise_var: Intervals
    read_noise_std: Intervals
    shutter_s: Intervals
    vignetting: Intervals
    jpeg_quality: Intervals


# field -> (unit, meaning); the README table is generated from this and the two profiles
FIELD_DOC: dict[str, tuple[str, str]] = {
    "hfov_deg": ("deg", "horizontal field of view; fx = fy = (W / 2) / tan(hfov / 2), principal point at the centre"),
    "aspect_ratios": ("W/H", "image aspect ratio when the height is not given (H = round(W / aspect))"),
    "camera_height_m": ("m", "camera height above the ground / floor"),
    "pitch_down_deg": ("deg", "constant tilt, positive = optical axis below the horizon"),
    "roll_deg": ("deg", "constant roll about the viewing direction"),
    "street_speed_mps": ("m/s", "mean camera speed, street and intersection"),
    "indoor_speed_mps": ("m/s", "camera speed indoors (handheld / robot / drone)"),
    "indoor_yaw_wobble_deg": ("deg", "amplitude of the indoor yaw oscillation around the path heading"),
    "facade_setback_m": ("m", "building facade distance behind the pavement edge (12 m from the road centre)"),
    "building_height_m": ("m", "building height"),
    "room_width_m": ("m", "width of an indoor room (length = width + 1..6 m)"),
    "corridor_width_m": ("m", "width of an indoor corridor"),
    "ceiling_height_m": ("m", "ceiling height (raised to camera height + 0.5 m where needed)"),
    "texture_families": ("", "surface pattern families (each at its own period, plus multi-octave grain)"),
    "texture_period_m": ("m", "pattern period on a surface, log-uniform"),
    "palette_saturation": ("", "HSV saturation of man-made surface colours"),
    "sun_elevation_deg": ("deg", "elevation of the directional light (azimuth uniform 0..360)"),
    "sun_intensity": ("", "directional light intensity"),
    "ambient": ("", "ambient light"),
    "light_flicker": ("", "relative amplitude of the slow light variation (passing clouds, period 10-30 s)"),
    "exposure_ev": ("EV", "exposure of the sequence (gain 2^EV)"),
    "exposure_jitter_ev": ("EV", "per-frame auto-exposure jitter amplitude"),
    "gamma": ("", "tone curve exponent applied to the exposed image"),
    "white_balance_gain": ("", "red and blue gains relative to green"),
    "shot_noise_var": ("", "shot noise variance per unit intensity (image in [0, 1])"),
    "read_noise_std": ("", "read noise standard deviation (image in [0, 1])"),
    "shutter_s": ("s", "exposure time: motion blur along the image motion of the static scene"),
    "vignetting": ("", "brightness factor 1 - v r^2, r = 1 at the image corners"),
    "jpeg_quality": ("", "JPEG re-encoding quality (per frame +-3)"),
}

TRAIN_RANGES = RandomizationRanges(
    hfov_deg=((50.0, 100.0),),
    aspect_ratios=(4.0 / 3.0, 16.0 / 9.0, KITTI_ASPECT),
    camera_height_m=((0.2, 2.2),),
    pitch_down_deg=((-5.0, 10.0),),
    roll_deg=((-3.0, 3.0),),
    street_speed_mps=((3.0, 12.0),),
    indoor_speed_mps=((0.2, 1.5),),
    indoor_yaw_wobble_deg=((0.0, 15.0),),
    facade_setback_m=((0.0, 3.0),),
    building_height_m=((4.0, 30.0),),
    room_width_m=((4.5, 8.0),),
    corridor_width_m=((1.8, 3.0),),
    ceiling_height_m=((2.5, 3.5),),
    texture_families=("noise", "stripes", "bricks", "checker"),
    texture_period_m=((0.08, 2.5),),
    palette_saturation=((0.0, 0.55),),
    sun_elevation_deg=((15.0, 75.0),),
    sun_intensity=((0.35, 0.9),),
    ambient=((0.2, 0.55),),
    light_flicker=((0.0, 0.03),),
    exposure_ev=((-0.8, 0.8),),
    exposure_jitter_ev=((0.0, 0.05),),
    gamma=((0.8, 1.25),),
    white_balance_gain=((0.85, 1.15),),
    shot_noise_var=((0.0, 4e-4),),
    read_noise_std=((0.0, 0.012),),
    shutter_s=((0.0, 0.012),),
    vignetting=((0.0, 0.35),),
    jpeg_quality=((40.0, 95.0),),
)

HELDOUT_RANGES = RandomizationRanges(
    **{**asdict(TRAIN_RANGES),
       "hfov_deg": ((45.0, 50.0), (100.0, 110.0)),
       "aspect_ratios": (3.0 / 2.0, 2.0),
       "camera_height_m": ((2.2, 2.5),),
       "pitch_down_deg": ((10.0, 15.0),),
       "roll_deg": ((-5.0, -3.0), (3.0, 5.0)),
       "facade_setback_m": ((4.0, 7.0),),
       "room_width_m": ((8.0, 10.0),),
       "texture_families": ("dots", "diagonal"),
       "palette_saturation": ((0.65, 0.95),),
       "jpeg_quality": ((25.0, 40.0),)})

RANGES: dict[str, RandomizationRanges] = {"train": TRAIN_RANGES, "heldout": HELDOUT_RANGES}
# parameters whose heldout range shares no interval (of positive length) or choice with training
HELDOUT_DISJOINT = ("hfov_deg", "aspect_ratios", "camera_height_m", "pitch_down_deg", "roll_deg",
                    "facade_setback_m", "room_width_m", "texture_families", "palette_saturation", "jpeg_quality")

# random streams: one SeedSequence per (seed, profile, purpose), so adding a draw to one purpose
# never changes the others
STREAMS = {"family": 1, "camera": 2, "lighting": 3, "photometric": 4, "layout": 5, "appearance": 6, "frame": 7}


def stream_rng(seed: int, profile: str, stream: str, *extra: int) -> np.random.Generator:
    """Independent generator for one purpose of one sequence (``extra``: e.g. a frame index)."""
    if seed < 0:
        raise ValueError(f"randomised profiles need a seed >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([seed, PROFILES.index(profile), STREAMS[stream], *extra]))


def draw_interval(rng: np.random.Generator, intervals: Intervals, log: bool = False) -> float:
    """One value, uniform over the union of ``intervals`` (log-uniform in value with ``log``)."""
    spans = [(math.log(lo), math.log(hi)) if log else (lo, hi) for lo, hi in intervals]
    lengths = np.array([hi - lo for lo, hi in spans])
    total = float(lengths.sum())
    u = float(rng.uniform(0.0, total)) if total > 0 else 0.0
    for (lo, hi), length in zip(spans, lengths):
        if u <= length:
            value = lo + u
            break
        u -= length
    else:
        value = spans[-1][1]
    return math.exp(value) if log else float(value)


def in_intervals(value: float, intervals: Intervals, tol: float = 1e-9) -> bool:
    """``value`` lies in the union of ``intervals`` (closed, with a tolerance)."""
    return any(lo - tol <= value <= hi + tol for lo, hi in intervals)


def overlap_length(a: Intervals, b: Intervals) -> float:
    """Total length of the intersection of two unions of intervals (0 when they only touch)."""
    return float(sum(max(0.0, min(ha, hb) - max(la, lb)) for la, ha in a for lb, hb in b))


@dataclass(frozen=True)
class CameraDraw:
    """Camera of one sequence: image size (px), horizontal field of view, mount height and angles.

    ``height_source``: "profile" (the height was chosen from ``aspect``) or "user" (given)."""

    width: int
    height: int
    hfov_deg: float
    aspect: float
    height_source: str
    camera_height_m: float
    pitch_down_deg: float
    roll_deg: float

    @property
    def intrinsics(self) -> Intrinsics:
        """Square pixels, principal point at the image centre, fx = (W / 2) / tan(hfov / 2)."""
        fx = (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)
        return Intrinsics(fx=fx, fy=fx, cx=self.width / 2.0 - 0.5, cy=self.height / 2.0 - 0.5,
                          width=self.width, height=self.height)


@dataclass(frozen=True)
class LightingDraw:
    """Directional light (world unit vector towards the light, from elevation and azimuth in deg),
    intensities, slow flicker (relative amplitude, period s, phase rad) and sky look."""

    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun_intensity: float
    ambient: float
    flicker_amp: float
    flicker_period_s: float
    flicker_phase_rad: float
    overcast: float  # 0 clear blue sky .. 1 grey overcast
    cloud_contrast: float

    @property
    def sun_dir_world(self) -> np.ndarray:
        el, az = math.radians(self.sun_elevation_deg), math.radians(self.sun_azimuth_deg)
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])

    def intensity_scale(self, t_s: float) -> float:
        """Multiplier of the direct light at time t (1 +- flicker_amp)."""
        return 1.0 + self.flicker_amp * math.sin(2 * math.pi * t_s / self.flicker_period_s + self.flicker_phase_rad)


@dataclass(frozen=True)
class PhotometricDraw:
    """Per-sequence camera/ISP parameters (units as in :data:`FIELD_DOC`)."""

    exposure_ev: float
    exposure_jitter_ev: float
    gamma: float
    wb_gain_r: float
    wb_gain_b: float
    shot_noise_var: float
    read_noise_std: float
    shutter_s: float
    vignetting: float
    jpeg_quality: float


@dataclass(frozen=True)
class LayoutDraw:
    """Scene family and the scalar layout / motion parameters of one sequence."""

    family: str
    indoor_layout: str  # "room" or "corridor" (indoor only; "" otherwise)
    speed_mps: float
    indoor_yaw_wobble_deg: float
    main_width_m: float  # room / corridor width (indoor), 0 otherwise
    ceiling_height_m: float  # indoor, 0 otherwise
    walker: bool  # indoor: a person walks through the room


@dataclass(frozen=True)
class SceneRandomization:
    """Everything drawn once per sequence for a randomised profile."""

    profile: str
    seed: int
    ranges: RandomizationRanges
    camera: CameraDraw
    lighting: LightingDraw
    photometric: PhotometricDraw
    layout: LayoutDraw

    @property
    def family(self) -> str:
        return self.layout.family

    def to_dict(self) -> dict:
        """Plain-type record (written as randomization.yaml beside calib.txt)."""
        K = self.camera.intrinsics
        return {"profile": self.profile, "seed": self.seed, "scene": self.layout.family,
                "camera": {**_plain(asdict(self.camera)), "fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy},
                "lighting": _plain(asdict(self.lighting)), "photometric": _plain(asdict(self.photometric)),
                "layout": _plain(asdict(self.layout))}


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in d.items()}


def choose_family(scene: str, seed: int, profile: str) -> str:
    """The scene family: ``scene`` itself, or for "mixed" one drawn from the seed."""
    if scene != "mixed":
        return scene
    rng = stream_rng(seed, profile, "family")
    return SCENE_FAMILIES[int(rng.choice(len(SCENE_FAMILIES), p=MIXED_FAMILY_PROBABILITIES))]


def draw_camera(rng: np.random.Generator, ranges: RandomizationRanges, width: int, height: int | None,
                camera_height_m: float | None = None) -> CameraDraw:
    """Field of view, aspect (-> height when ``height`` is None), mount height, pitch and roll."""
    hfov = draw_interval(rng, ranges.hfov_deg)
    aspect = float(ranges.aspect_ratios[int(rng.integers(len(ranges.aspect_ratios)))])
    mount_h = draw_interval(rng, ranges.camera_height_m)
    pitch = draw_interval(rng, ranges.pitch_down_deg)
    roll = draw_interval(rng, ranges.roll_deg)
    if height is None:
        height, source = max(16, int(round(width / aspect))), "profile"
    else:
        source = "user"
    return CameraDraw(width=width, height=height, hfov_deg=hfov, aspect=aspect, height_source=source,
                      camera_height_m=mount_h if camera_height_m is None else float(camera_height_m),
                      pitch_down_deg=pitch, roll_deg=roll)


def draw_lighting(rng: np.random.Generator, ranges: RandomizationRanges) -> LightingDraw:
    return LightingDraw(sun_elevation_deg=draw_interval(rng, ranges.sun_elevation_deg),
                        sun_azimuth_deg=float(rng.uniform(0.0, 360.0)),
                        sun_intensity=draw_interval(rng, ranges.sun_intensity),
                        ambient=draw_interval(rng, ranges.ambient),
                        flicker_amp=draw_interval(rng, ranges.light_flicker),
                        flicker_period_s=float(rng.uniform(10.0, 30.0)),
                        flicker_phase_rad=float(rng.uniform(0.0, 2 * math.pi)),
                        overcast=float(rng.uniform(0.0, 1.0)), cloud_contrast=float(rng.uniform(0.05, 0.3)))


def draw_photometric(rng: np.random.Generator, ranges: RandomizationRanges) -> PhotometricDraw:
    return PhotometricDraw(exposure_ev=draw_interval(rng, ranges.exposure_ev),
                           exposure_jitter_ev=draw_interval(rng, ranges.exposure_jitter_ev),
                           gamma=draw_interval(rng, ranges.gamma),
                           wb_gain_r=draw_interval(rng, ranges.white_balance_gain),
                           wb_gain_b=draw_interval(rng, ranges.white_balance_gain),
                           shot_noise_var=draw_interval(rng, ranges.shot_noise_var),
                           read_noise_std=draw_interval(rng, ranges.read_noise_std),
                           shutter_s=draw_interval(rng, ranges.shutter_s),
                           vignetting=draw_interval(rng, ranges.vignetting),
                           jpeg_quality=draw_interval(rng, ranges.jpeg_quality))


def draw_layout(rng: np.random.Generator, ranges: RandomizationRanges, family: str,
                camera_height_m: float) -> LayoutDraw:
    """Scalar layout parameters; indoor ceilings clear the camera by at least 0.5 m."""
    if family == "indoor":
        layout = INDOOR_LAYOUTS[int(rng.integers(len(INDOOR_LAYOUTS)))]
        width = draw_interval(rng, ranges.room_width_m if layout == "room" else ranges.corridor_width_m)
        ceiling = max(draw_interval(rng, ranges.ceiling_height_m), camera_height_m + 0.5)
        return LayoutDraw(family=family, indoor_layout=layout, speed_mps=draw_interval(rng, ranges.indoor_speed_mps),
                          indoor_yaw_wobble_deg=draw_interval(rng, ranges.indoor_yaw_wobble_deg),
                          main_width_m=width, ceiling_height_m=ceiling, walker=bool(rng.random() < 0.5))
    return LayoutDraw(family=family, indoor_layout="", speed_mps=draw_interval(rng, ranges.street_speed_mps),
                      indoor_yaw_wobble_deg=0.0, main_width_m=0.0, ceiling_height_m=0.0, walker=False)


def draw_scene_randomization(profile: str, seed: int, scene: str, width: int, height: int | None,
                             camera_height_m: float | None = None) -> SceneRandomization:
    """All per-sequence draws of a randomised profile ("train" / "heldout"); deterministic in the
    arguments. ``height`` None: chosen from the drawn aspect ratio; ``camera_height_m`` overrides the draw."""
    if profile not in RANGES:
        raise ValueError(f"profile must be one of {sorted(RANGES)} for a randomised scene, got {profile!r}")
    if scene not in SCENE_CHOICES:
        raise ValueError(f"scene must be one of {SCENE_CHOICES}, got {scene!r}")
    ranges = RANGES[profile]
    family = choose_family(scene, seed, profile)
    camera = draw_camera(stream_rng(seed, profile, "camera"), ranges, width, height, camera_height_m)
    return SceneRandomization(
        profile=profile, seed=seed, ranges=ranges, camera=camera,
        lighting=draw_lighting(stream_rng(seed, profile, "lighting"), ranges),
        photometric=draw_photometric(stream_rng(seed, profile, "photometric"), ranges),
        layout=draw_layout(stream_rng(seed, profile, "layout"), ranges, family, camera.camera_height_m))


def _format_value(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return " or ".join(f"[{lo:g}, {hi:g}]" for lo, hi in value)
    if isinstance(value, tuple) and value and isinstance(value[0], float):
        names = {round(4 / 3, 6): "4:3", round(16 / 9, 6): "16:9", round(KITTI_ASPECT, 6): "3.31:1 (KITTI)",
                 1.5: "3:2", 2.0: "2:1"}
        return ", ".join(names.get(round(v, 6), f"{v:.3g}") for v in value)
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def ranges_table_markdown() -> str:
    """The train / heldout ranges as a Markdown table (bold heldout cells: disjoint from training)."""
    lines = ["| parameter | unit | train | heldout | meaning |", "|---|---|---|---|---|"]
    for f in fields(RandomizationRanges):
        train, held = getattr(TRAIN_RANGES, f.name), getattr(HELDOUT_RANGES, f.name)
        unit, meaning = FIELD_DOC[f.name]
        held_text = f"**{_format_value(held)}**" if f.name in HELDOUT_DISJOINT else "same"
        lines.append(f"| `{f.name}` | {unit} | {_format_value(train)} | {held_text} | {meaning} |")
    return "\n".join(lines)


def hsv_to_rgb(hue: float, saturation: float, value: float) -> list[float]:
    """HSV in [0, 1]^3 -> RGB list in [0, 1] (the standard hexcone model)."""
    h6 = (hue % 1.0) * 6.0
    i = int(h6) % 6
    f = h6 - int(h6)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    return [float(c) for c in ((value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value),
                                (value, p, q))[i]]


def rgb_saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of RGB colours (..., 3): (max - min) / max, 0 for black."""
    rgb = np.asarray(rgb, dtype=np.float64)
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.where(hi > 0, hi, 1.0), 0.0)


def palette_colour(rng: np.random.Generator, ranges: RandomizationRanges, value_lo: float = 0.25,
                   value_hi: float = 0.9) -> list[float]:
    """A man-made surface colour: uniform hue, saturation from ``palette_saturation``, value in
    [value_lo, value_hi]."""
    return hsv_to_rgb(float(rng.uniform(0.0, 1.0)), draw_interval(rng, ranges.palette_saturation),
                      float(rng.uniform(value_lo, value_hi)))


def vegetation_colour(rng: np.random.Generator) -> list[float]:
    """Leaves and grass (same in every profile): yellow-green to blue-green."""
    return hsv_to_rgb(float(rng.uniform(0.2, 0.42)), float(rng.uniform(0.35, 0.75)), float(rng.uniform(0.25, 0.6)))
