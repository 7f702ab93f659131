"""Deterministic analytic ray caster for the synthetic street (numpy only, no torch).

Every pixel's ray (through the pixel centre, camera-frame direction with z = 1 so that the ray
parameter IS the depth) is intersected with the ground plane z = 0 and with the yaw-rotated
boxes of :mod:`depth_sfm_ros.synth.scene` (slab test, only inside each box's projected
bounding rectangle). The nearest hit gives depth, instance id and surface coordinates; colour
is a texture of the surface coordinates times Lambertian sun shading, so a surface point looks
the same from every view. Rays that hit nothing within ``max_depth_m`` are sky:
depth NaN, colour a function of the ray direction only (consistent for a point at infinity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose

from . import photometric as photometric_ops
from . import shading, texture
from .indoor import build_indoor_objects, corridor_layout, room_layout, room_loop
from .randomization import (PROFILES, SCENE_CHOICES, RandomizationRanges, SceneRandomization,
                            draw_scene_randomization, stream_rng)
from .scene import BUILDING, CAR, LANE_CAMERA_D, POLE, Objects, Road, Trajectory, build_objects
from .street import build_street_objects, crossing_positions

_SUN_DIR = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])


def _clip_box_near(corners_c: np.ndarray, near_m: float) -> np.ndarray:
    """Points bounding the part of a box in front of the plane z = near_m (camera frame).

    corners_c (8, 3) in the order of ``[[x, y, z] for x in lo/hi for y in lo/hi for z in lo/hi]``;
    returns the corners in front plus the crossings of the 12 edges with the plane, (M, 3)."""
    front = corners_c[corners_c[:, 2] > near_m]
    crossings = []
    for a in range(8):
        for bit in (1, 2, 4):
            b = a | bit
            if b == a:
                continue
            za, zb = corners_c[a, 2], corners_c[b, 2]
            if (za > near_m) != (zb > near_m):
                w = (near_m - za) / (zb - za)
                crossings.append(corners_c[a] + w * (corners_c[b] - corners_c[a]))
    if crossings:
        front = np.vstack([front, np.array(crossings)])
    return front


CLASSIC_HEIGHT_PX = 192
CLASSIC_CAMERA_HEIGHT_M = 1.65
CLASSIC_FX_NORM, CLASSIC_FY_NORM = 0.58, 1.92


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of one synthetic sequence. Same config (incl. seed) -> identical output.

    width/height: image size (px); num_frames at fps (Hz); start_stamp_ns: stamp of frame 0;
    speed_mean_mps / speed_amp_mps: camera speed profile; camera_height_m; fx_norm / fy_norm:
    focal lengths as fractions of width / height (KITTI-like 0.58 / 1.92), principal point at the
    image centre; lead_gap_m: distance of the car moving with the camera; max_depth_m: surfaces
    farther than this are rendered as sky (depth NaN); keep it < 256 m for the KITTI uint16 PNGs.

    randomize: "none" (the classic street, bit-identical to the renderer before randomisation),
    "train" or "heldout" (see :mod:`.randomization`); scene: "street", "intersection", "indoor"
    or "mixed" (the seed picks the family; anything but "street" needs a randomised profile).
    With a randomised profile the field of view, aspect, mount height / pitch / roll, layout,
    lighting and photometric chain are drawn from the profile; ``height`` None lets the profile's
    aspect ratio pick the image height, ``camera_height_m`` overrides the drawn mount height,
    ``speed_mean_mps`` the drawn speed; fx_norm / fy_norm must stay None (the profile draws the FOV).
    None defaults of the classic profile: height 192, camera_height_m 1.65, fx/fy_norm 0.58 / 1.92.
    """

    seed: int = 0
    width: int = 640
    height: int | None = None  # None: 192 (randomize="none") or chosen by the profile's aspect
    num_frames: int = 100
    fps: float = 10.0
    start_stamp_ns: int = 1_700_000_000_000_000_000
    speed_mean_mps: float | None = None  # None: drawn from the seed in [7, 10] (profile range when randomised)
    speed_amp_mps: float = 2.0
    camera_height_m: float | None = None  # None: 1.65 (randomize="none") or drawn by the profile
    fx_norm: float | None = None  # None: 0.58 (randomize="none"); randomised profiles draw the FOV
    fy_norm: float | None = None  # None: 1.92
    lead_gap_m: float | None = None  # None: drawn from the seed in [10, 16]
    max_depth_m: float = 250.0
    randomize: str = "none"
    scene: str = "street"

    def __post_init__(self) -> None:
        if self.randomize not in PROFILES:
            raise ValueError(f"randomize must be one of {PROFILES}, got {self.randomize!r}")
        if self.scene not in SCENE_CHOICES:
            raise ValueError(f"scene must be one of {SCENE_CHOICES}, got {self.scene!r}")
        if self.randomize == "none":
            if self.scene != "street":
                raise ValueError(f"scene {self.scene!r} needs randomize='train' or 'heldout' "
                                 "(randomize='none' is the classic street)")
            for name, default in (("height", CLASSIC_HEIGHT_PX), ("camera_height_m", CLASSIC_CAMERA_HEIGHT_M),
                                  ("fx_norm", CLASSIC_FX_NORM), ("fy_norm", CLASSIC_FY_NORM)):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
        else:
            if self.fx_norm is not None or self.fy_norm is not None:
                raise ValueError("fx_norm / fy_norm apply to randomize='none' only; randomised profiles draw the "
                                 "field of view")
            if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
                raise ValueError(f"randomised profiles need an integer seed >= 0, got {self.seed!r}")
        height = self.height if self.height is not None else 16
        if not (isinstance(self.width, int) and isinstance(height, int)) or self.width < 16 or height < 16:
            raise ValueError(f"image size must be integers >= 16, got {self.width}x{self.height}")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}")
        if not (0.1 <= self.fps <= 1000.0):
            raise ValueError(f"fps must be in [0.1, 1000], got {self.fps}")
        if self.start_stamp_ns < 0:
            raise ValueError(f"start_stamp_ns must be >= 0, got {self.start_stamp_ns}")
        if self.speed_mean_mps is not None and not (0.0 < self.speed_mean_mps <= 40.0):
            raise ValueError(f"speed_mean_mps must be in (0, 40], got {self.speed_mean_mps}")
        if not (0.0 <= self.speed_amp_mps < (self.speed_mean_mps or 7.0)):
            raise ValueError(f"speed_amp_mps must be >= 0 and below the mean speed, got {self.speed_amp_mps}")
        if self.camera_height_m is not None and not (0.1 <= self.camera_height_m <= 5.0):
            raise ValueError(f"camera_height_m must be in [0.1, 5], got {self.camera_height_m}")
        if self.randomize == "none" and (self.fx_norm <= 0 or self.fy_norm <= 0):
            raise ValueError("fx_norm and fy_norm must be > 0")
        if self.lead_gap_m is not None and not (5.0 <= self.lead_gap_m <= 60.0):
            raise ValueError(f"lead_gap_m must be in [5, 60], got {self.lead_gap_m}")
        if self.max_depth_m <= 1.0:
            raise ValueError(f"max_depth_m must be > 1, got {self.max_depth_m}")

    def randomization(self) -> SceneRandomization | None:
        """The per-sequence draws of a randomised profile (None for randomize="none")."""
        if self.randomize == "none":
            return None
        return draw_scene_randomization(self.randomize, int(self.seed), self.scene, self.width, self.height,
                                        self.camera_height_m)

    @property
    def intrinsics(self) -> Intrinsics:
        draw = self.randomization()
        if draw is not None:
            return draw.camera.intrinsics
        return Intrinsics.from_normalized(self.fx_norm, self.fy_norm, 0.5, 0.5, self.width, self.height)

    def stamp_ns(self, index: int) -> int:
        return int(self.start_stamp_ns + round(index * 1e9 / self.fps))


@dataclass
class SyntheticFrame:
    """Ground truth of one frame.

    image_rgb (H, W, 3) uint8; depth_m (H, W) float32 z along the optical axis in metres, NaN for
    sky; dynamic_mask (H, W) bool (objects that move in the world, incl. the one moving with the
    camera); instance_ids (H, W) int32 (0 = ground/sky, ids stable across frames);
    T_world_cam: camera optical frame in the world; stamp_ns / stamp_s: capture time.
    """

    index: int
    stamp_ns: int
    image_rgb: np.ndarray
    depth_m: np.ndarray
    dynamic_mask: np.ndarray
    instance_ids: np.ndarray
    T_world_cam: Pose

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


@dataclass
class SyntheticSequence:
    """All frames of a rendered sequence plus the intrinsics and the object table.

    ``dynamic_ids``: instance ids of objects that move in the world; ``lead_id``: the id of the
    object moving with the camera (0 when there is none, e.g. indoors); ``randomization``: the
    per-sequence draws of a randomised profile (None for randomize="none").
    """

    config: SynthConfig
    intrinsics: Intrinsics
    frames: list[SyntheticFrame]
    dynamic_ids: np.ndarray
    lead_id: int
    object_kinds: dict[int, str] = field(default_factory=dict)
    randomization: SceneRandomization | None = None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> SyntheticFrame:
        return self.frames[index]

    def __iter__(self) -> Iterator[SyntheticFrame]:
        return iter(self.frames)


def _indoor_speed_amp(speed_mps: float, ranges: RandomizationRanges) -> float:
    """Speed oscillation amplitude (m/s) of a corridor walk: 15 % of the mean, but the instantaneous
    speed stays inside the profile's indoor speed range."""
    lo, hi = min(lo for lo, _ in ranges.indoor_speed_mps), max(hi for _, hi in ranges.indoor_speed_mps)
    return max(0.0, min(0.15 * speed_mps, hi - speed_mps, speed_mps - lo))


class SyntheticScene:
    """A seeded scene that renders any frame on demand (random access, nothing cached).

    ``objects`` holds boxes; ``instance_id`` of a box is its public instance id (several boxes can
    share one in randomised layouts). Internally the cast buffers hold box row + 1."""

    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        self.randomization: SceneRandomization | None = config.randomization()
        self.crossings_x_m: list[float] = []
        if self.randomization is None:
            self._init_classic(config)
        else:
            self._init_randomized(config, self.randomization)
        self.dynamic_ids = np.unique(self.objects.instance_id[self.objects.is_dynamic])
        followers = self.objects.instance_id[self.objects.follows_camera]
        self.lead_id = int(followers[0]) if followers.size else 0
        # look-up tables indexed by box row + 1 (0 = ground)
        self._box_instance = np.concatenate([[0], self.objects.instance_id]).astype(np.int32)
        self._box_dynamic = np.concatenate([[False], self.objects.is_dynamic])
        self._is_dynamic_lut = np.zeros(int(self._box_instance.max()) + 1, dtype=bool)
        self._is_dynamic_lut[self.dynamic_ids] = True
        K = self.intrinsics
        v, u = np.mgrid[0:K.height, 0:K.width].astype(np.float64)
        # (H, W, 3) float32 ray directions through the pixel centres, z = 1 (ray parameter = depth)
        self._rays_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], axis=-1).astype(np.float32)
        self._ray_len = np.linalg.norm(self._rays_cam, axis=-1)
        if self.randomization is None:
            seed_mix = int(self._rng.integers(1, 2**31 - 1))
            self._texture_seed = (np.arange(len(self.objects) + 1, dtype=np.int64) * 1009 + seed_mix) % (2**31 - 1)
            self._sky_seed = seed_mix
        else:
            self._init_look(self.randomization)
        del self._rng

    def _init_classic(self, config: SynthConfig) -> None:
        """The classic street (randomize="none"): the original draw order, bit for bit."""
        self.intrinsics = config.intrinsics
        rng = self._rng = np.random.default_rng(config.seed)
        road = Road(amplitudes_m=(float(rng.uniform(4.0, 10.0)), float(rng.uniform(0.5, 2.0))),
                    wavelengths_m=(float(rng.uniform(300.0, 600.0)), float(rng.uniform(100.0, 200.0))),
                    phases_rad=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))))
        speed = config.speed_mean_mps if config.speed_mean_mps is not None else float(rng.uniform(7.0, 10.0))
        self.trajectory = Trajectory(
            road=road, speed_mean_mps=speed, speed_amp_mps=min(config.speed_amp_mps, 0.9 * speed),
            speed_period_s=float(rng.uniform(15.0, 30.0)), speed_phase=float(rng.uniform(0, 2 * math.pi)),
            height_m=config.camera_height_m, bounce_amp_m=0.03, pitch_amp_rad=0.008, sway_amp_m=0.25,
            motion_period_s=(float(rng.uniform(1.5, 3.0)), float(rng.uniform(2.0, 4.0)), float(rng.uniform(6.0, 12.0))),
            motion_phase=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=3)))
        self.road = road
        duration_s = (config.num_frames - 1) / config.fps
        x_end = float(self.trajectory.x(duration_s))
        lead_gap = config.lead_gap_m if config.lead_gap_m is not None else float(rng.uniform(10.0, 16.0))
        self.objects: Objects = build_objects(rng, -40.0, x_end + config.max_depth_m, duration_s, speed,
                                              lead_gap)

    def _init_randomized(self, config: SynthConfig, draw: SceneRandomization) -> None:
        """Camera, trajectory and boxes of a randomised profile (street, intersection or indoor)."""
        self.intrinsics = draw.camera.intrinsics
        rng = self._rng = stream_rng(config.seed, draw.profile, "layout", 1)
        lay, cam = draw.layout, draw.camera
        speed = config.speed_mean_mps if config.speed_mean_mps is not None else lay.speed_mps
        pitch, roll = math.radians(cam.pitch_down_deg), math.radians(cam.roll_deg)
        duration_s = (config.num_frames - 1) / config.fps
        if lay.family == "indoor":
            self.road = Road(amplitudes_m=(0.0, 0.0), wavelengths_m=(100.0, 100.0), phases_rad=(0.0, 0.0))  # y = 0
            wobble = math.radians(lay.indoor_yaw_wobble_deg)
            if lay.indoor_layout == "room":
                layout = room_layout(rng, lay.main_width_m, lay.ceiling_height_m)
                self.trajectory = room_loop(rng, layout, speed, cam.camera_height_m, wobble, pitch, roll)
                walker_x_range = None
            else:
                self.trajectory = Trajectory(
                    road=self.road, speed_mean_mps=speed, speed_amp_mps=_indoor_speed_amp(speed, draw.ranges),
                    speed_period_s=float(rng.uniform(8.0, 20.0)), speed_phase=float(rng.uniform(0, 2 * math.pi)),
                    height_m=cam.camera_height_m, bounce_amp_m=float(rng.uniform(0.0, 0.03)),
                    pitch_amp_rad=float(rng.uniform(0.0, 0.03)), sway_amp_m=0.08,
                    motion_period_s=(float(rng.uniform(0.8, 2.0)), float(rng.uniform(1.5, 4.0)),
                                     float(rng.uniform(4.0, 10.0))),
                    motion_phase=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=3)), lane_d_m=0.0,
                    yaw_amp_rad=wobble, yaw_period_s=float(rng.uniform(3.0, 8.0)),
                    yaw_phase=float(rng.uniform(0, 2 * math.pi)), mount_pitch_rad=pitch, mount_roll_rad=roll)
                x_end = float(self.trajectory.x(duration_s))
                layout = corridor_layout(rng, lay.main_width_m, lay.ceiling_height_m, x_end)
                walker_x_range = (1.0, x_end + 4.0)
            self.indoor_layout = layout
            self.objects = build_indoor_objects(rng, draw.ranges, layout, lay.walker, walker_x_range)
            return
        self.road = Road(amplitudes_m=(float(rng.uniform(4.0, 10.0)), float(rng.uniform(0.5, 2.0))),
                         wavelengths_m=(float(rng.uniform(300.0, 600.0)), float(rng.uniform(100.0, 200.0))),
                         phases_rad=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))))
        self.trajectory = Trajectory(
            road=self.road, speed_mean_mps=speed, speed_amp_mps=min(config.speed_amp_mps, 0.3 * speed),
            speed_period_s=float(rng.uniform(15.0, 30.0)), speed_phase=float(rng.uniform(0, 2 * math.pi)),
            height_m=cam.camera_height_m, bounce_amp_m=0.03, pitch_amp_rad=0.008, sway_amp_m=0.25,
            motion_period_s=(float(rng.uniform(1.5, 3.0)), float(rng.uniform(2.0, 4.0)), float(rng.uniform(6.0, 12.0))),
            motion_phase=tuple(float(v) for v in rng.uniform(0, 2 * math.pi, size=3)), lane_d_m=LANE_CAMERA_D,
            mount_pitch_rad=pitch, mount_roll_rad=roll)
        x_end = float(self.trajectory.x(duration_s))
        x_max = x_end + config.max_depth_m
        lead_gap = config.lead_gap_m if config.lead_gap_m is not None else float(rng.uniform(10.0, 16.0))
        if lay.family == "intersection":
            self.crossings_x_m = crossing_positions(rng, -40.0, x_max)
        times_s = np.linspace(0.0, duration_s, max(2, config.num_frames))
        self.objects = build_street_objects(rng, draw.ranges, self.road, -40.0, x_max, duration_s, speed, lead_gap,
                                            self.crossings_x_m, np.asarray(self.trajectory.x(times_s)), times_s)

    def _init_look(self, draw: SceneRandomization) -> None:
        """Surface looks and the shading context of a randomised profile."""
        rng = stream_rng(self.config.seed, draw.profile, "appearance")
        indoor = draw.family == "indoor"
        box_look = shading.build_box_look(rng, self.objects, draw.ranges)
        ground_look = shading.build_ground_look(rng, draw.ranges, indoor)
        self._shading = shading.ShadingContext(
            intrinsics=self.intrinsics, rays_cam=self._rays_cam, ray_len=self._ray_len, objects=self.objects,
            box_look=box_look, ground_look=ground_look, lighting=draw.lighting, road=self.road,
            crossings_x_m=self.crossings_x_m, indoor=indoor, sky_seed=int(rng.integers(1, 2**31 - 1)))

    def __len__(self) -> int:
        return self.config.num_frames

    @property
    def object_kinds(self) -> dict[int, str]:
        from .scene import KIND_NAMES
        return {int(i): KIND_NAMES[int(k)] for i, k in zip(self.objects.instance_id, self.objects.kind)}

    def T_world_cam(self, index: int) -> Pose:
        return self.trajectory.T_world_cam(index / self.config.fps)

    def randomization_record(self) -> dict | None:
        """What a randomised sequence drew (camera, lighting, photometric chain, layout) plus the realised
        layout (cross streets, room size, object counts), as plain types; None for randomize="none"."""
        if self.randomization is None:
            return None
        record = self.randomization.to_dict()
        layout = record["layout"]
        layout["crossings_x_m"] = [float(x) for x in self.crossings_x_m]
        indoor = getattr(self, "indoor_layout", None)
        if indoor is not None:
            layout["length_m"] = float(indoor.x1_m - indoor.x0_m)
            layout["side_room_depth_m"] = [float(v) for v in indoor.side_depth_m]
            layout["door_height_m"] = float(indoor.door_height_m)
        layout["num_boxes"] = len(self.objects)
        layout["num_instances"] = int(np.unique(self.objects.instance_id).size)
        layout["num_dynamic_instances"] = int(self.dynamic_ids.size)
        return record

    def render_frame(self, index: int, photometric: bool = True) -> SyntheticFrame:
        """Render frame ``index`` (0 <= index < num_frames).

        ``photometric``: randomised profiles only: False skips the camera/ISP chain (motion blur,
        exposure, white balance, vignetting, noise, gamma, JPEG) and returns the clean radiance as
        uint8; the ground truth is the same either way. The classic profile has no such chain."""
        if not (0 <= index < self.config.num_frames):
            raise IndexError(f"frame index {index} outside [0, {self.config.num_frames})")
        t_s = index / self.config.fps
        T_wc = self.trajectory.T_world_cam(t_s)
        depth, obj, face, coords, yaws = self._cast(t_s, T_wc)
        valid = np.isfinite(depth)
        if self.randomization is None:
            image = self._shade(T_wc, depth, obj, face, coords, yaws)
            instance_ids = np.where(valid, obj, 0).astype(np.int32)
            dynamic_mask = self._is_dynamic_lut[instance_ids]
        else:
            radiance = shading.shade(self._shading, T_wc, t_s, depth, obj, face, coords, yaws)
            image = self._camera_image(index, t_s, T_wc, radiance, depth) if photometric \
                else photometric_ops.to_uint8(radiance)
            instance_ids = np.where(valid, self._box_instance[obj], 0).astype(np.int32)
            dynamic_mask = valid & self._box_dynamic[obj]
        return SyntheticFrame(index=index, stamp_ns=self.config.stamp_ns(index), image_rgb=image,
                              depth_m=np.where(valid, depth, np.nan).astype(np.float32),
                              dynamic_mask=dynamic_mask, instance_ids=instance_ids, T_world_cam=T_wc)

    def _camera_image(self, index: int, t_s: float, T_wc: Pose, radiance: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """The photometric chain of frame ``index`` (seeded by seed, profile and index)."""
        draw = self.randomization
        rng = stream_rng(self.config.seed, draw.profile, "frame", index)
        params = photometric_ops.frame_photometric(draw.photometric, rng)
        half_flow = None
        if draw.photometric.shutter_s > 0.0:
            T_late_cam = self.trajectory.T_world_cam(t_s + draw.photometric.shutter_s / 2).inverse() @ T_wc
            half_flow = photometric_ops.image_motion_px(depth, self.intrinsics, T_late_cam)
        return photometric_ops.camera_image(radiance, params, rng, half_flow)

    # --- ray casting --------------------------------------------------------------------------
    def _cast(self, t_s: float, T_wc: Pose) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Nearest hit per pixel: depth (H, W) (inf = none), box row + 1 (H, W) (0 = ground),
        face (H, W) int8 (0..5 box faces +x,-x,+y,-y,+z,-z; 6 ground), surface coords (H, W, 2) m,
        and the object yaws (N,) at time t."""
        K = self.intrinsics
        H, W = K.height, K.width
        R_wc, o = T_wc.R, T_wc.t
        rays_w = self._rays_cam @ R_wc.T.astype(np.float32)  # (H, W, 3)
        depth = np.full((H, W), np.inf, dtype=np.float32)
        obj = np.zeros((H, W), dtype=np.int32)
        face = np.full((H, W), 6, dtype=np.int8)
        coords = np.zeros((H, W, 2), dtype=np.float32)
        # ground plane z = 0
        dz = rays_w[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_ground = np.where(dz < -1e-9, -o[2] / dz, np.inf)
        t_ground[t_ground > self.config.max_depth_m] = np.inf
        depth[:] = t_ground
        hit = np.isfinite(t_ground)
        coords[hit, 0] = o[0] + t_ground[hit] * rays_w[hit, 0]
        coords[hit, 1] = o[1] + t_ground[hit] * rays_w[hit, 1]
        # boxes
        cam_x = float(self.trajectory.x(t_s))
        positions, yaws = self.objects.positions(t_s, cam_x, self.road)
        half = self.objects.half_extent_m
        p_cam = (positions - o) @ R_wc  # box origins in the camera frame (N, 3)
        radius = np.linalg.norm(half, axis=1) * 1.05 + half[:, 2]
        near = (p_cam[:, 2] > -radius) & (p_cam[:, 2] < self.config.max_depth_m + radius)
        near &= np.abs(p_cam[:, 0]) < p_cam[:, 2] * (K.width / K.fx) + radius
        candidates = np.flatnonzero(near)
        skip_occluded = self.randomization is not None
        if skip_occluded:  # nearest first, so boxes hidden behind walls are skipped cheaply
            candidates = candidates[np.argsort(p_cam[candidates, 2], kind="stable")]
        for i in candidates:
            self._cast_box(i, positions[i], float(yaws[i]), half[i], T_wc, rays_w, depth, obj, face, coords,
                           skip_occluded)
        too_far = depth > self.config.max_depth_m  # everything beyond max_depth_m is sky
        depth[too_far] = np.inf
        obj[too_far] = 0
        face[too_far] = 6
        return depth, obj, face, coords, yaws

    def _cast_box(self, i: int, position: np.ndarray, yaw: float, half: np.ndarray, T_wc: Pose,
                  rays_w: np.ndarray, depth: np.ndarray, obj: np.ndarray, face: np.ndarray,
                  coords: np.ndarray, skip_occluded: bool = False) -> None:
        """Slab-test box ``i`` inside its screen rectangle and keep the nearer hits (writes the buffers).

        ``skip_occluded``: return early when every pixel of the rectangle is already nearer than the
        box's nearest point (exact: no hit can be nearer than the nearest corner's depth)."""
        K = self.intrinsics
        c, s = math.cos(yaw), math.sin(yaw)
        R_wb = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        lo = np.array([-half[0], -half[1], 0.0], dtype=np.float32)
        hi = np.array([half[0], half[1], 2.0 * half[2]], dtype=np.float32)
        # screen rectangle of the box
        corners_b = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        corners_c = (corners_b @ R_wb.T + position - T_wc.t) @ T_wc.R
        points = _clip_box_near(corners_c, near_m=1e-2)
        if points.shape[0] == 0:
            return
        u = points[:, 0] / points[:, 2] * K.fx + K.cx
        v = points[:, 1] / points[:, 2] * K.fy + K.cy
        u0, u1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())) + 1, K.width)
        v0, v1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())) + 1, K.height)
        if u0 >= u1 or v0 >= v1:
            return
        if skip_occluded and not (depth[v0:v1, u0:u1] > np.float32(points[:, 2].min()) * np.float32(0.999)).any():
            return
        d_b = rays_w[v0:v1, u0:u1] @ R_wb.astype(np.float32)  # ray directions in the box frame
        o_b = ((T_wc.t - position) @ R_wb).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.float32(1.0) / np.where(np.abs(d_b) < 1e-12, np.float32(1e-12), d_b)
        t1 = (lo - o_b) * inv
        t2 = (hi - o_b) * inv
        t_near_axes = np.minimum(t1, t2)
        t_near = t_near_axes.max(axis=-1)
        t_far = np.maximum(t1, t2).min(axis=-1)
        sub_depth = depth[v0:v1, u0:u1]
        hit = (t_far >= t_near) & (t_near > 1e-3) & (t_near < sub_depth)
        if not hit.any():
            return
        axis = t_near_axes.argmax(axis=-1)[hit]
        d_hit = d_b[hit]
        sign_neg = np.take_along_axis(d_hit, axis[:, None], axis=1)[:, 0] > 0  # entering through the -axis face
        p_b = o_b + t_near[hit][:, None] * d_hit
        # surface coordinates on the face: the two other axes
        a_idx = np.where(axis == 0, 1, 0)
        b_idx = np.where(axis == 2, 1, 2)
        ab = np.stack([np.take_along_axis(p_b, a_idx[:, None], 1)[:, 0],
                       np.take_along_axis(p_b, b_idx[:, None], 1)[:, 0]], axis=1)
        sub_depth[hit] = t_near[hit]
        obj[v0:v1, u0:u1][hit] = i + 1
        face[v0:v1, u0:u1][hit] = (2 * axis + sign_neg).astype(np.int8)
        coords[v0:v1, u0:u1][hit] = ab

    # --- shading ------------------------------------------------------------------------------
    @staticmethod
    def _normal_table(yaws: np.ndarray) -> np.ndarray:
        """World normals (N + 1, 7, 3) float32 indexed by [box row + 1, face] (see shading.normal_table)."""
        return shading.normal_table(yaws)

    def _shade(self, T_wc: Pose, depth: np.ndarray, obj: np.ndarray, face: np.ndarray,
               coords: np.ndarray, yaws: np.ndarray) -> np.ndarray:
        """RGB (H, W, 3) uint8 from the cast buffers; yaws (N,) of the objects at this time."""
        K = self.intrinsics
        H, W = K.height, K.width
        image = np.empty((H, W, 3), dtype=np.float32)
        rays_w = self._rays_cam @ T_wc.R.T.astype(np.float32)
        ray_len = self._ray_len
        # sky: a gradient of the ray elevation plus soft clouds in direction space
        sky = ~np.isfinite(depth)
        if sky.any():
            dirs = rays_w[sky] / np.linalg.norm(rays_w[sky], axis=1, keepdims=True)
            elev = np.clip(dirs[:, 2], -0.2, 1.0)
            azim = np.arctan2(dirs[:, 1], dirs[:, 0])
            clouds = texture.value_noise(azim * 8.0, elev * 25.0, 1.0, self._sky_seed)
            base = np.array([0.62, 0.75, 0.92], dtype=np.float32) - 0.25 * elev[:, None].astype(np.float32)
            image[sky] = base + (0.18 * clouds)[:, None]
        surf = ~sky
        d = depth[surf]
        ids = obj[surf]
        f = face[surf]
        ab = coords[surf]
        ground = f == 6
        normals = self._normal_table(yaws)[ids, f]  # (n, 3) world normals
        dirs = rays_w[surf] / ray_len[surf][:, None]
        cos_inc = np.clip(np.abs(np.sum(normals * dirs, axis=1)), 0.08, 1.0)
        footprint = d * ray_len[surf] / K.fx / cos_inc
        seed = self._texture_seed[ids]
        noise = texture.fbm(ab[:, 0], ab[:, 1], seed, footprint)
        colour = np.empty((d.size, 3), dtype=np.float32)
        # ground: asphalt on the road, paving outside, lane markings (all masks anti-aliased)
        if ground.any():
            x, y = ab[ground, 0], ab[ground, 1]
            lateral = (y - self.road.y(x)).astype(np.float32)
            fp = footprint[ground]  # stretched along the viewing direction: for along-road patterns
            fp_lat = (d[ground] * ray_len[surf][ground] / K.fx).astype(np.float32)  # across the road
            g = noise[ground][:, None]
            on_road = texture.band(lateral, 0.0, 10.0, fp_lat)[:, None]
            slabs = (texture.stripes(x, 1.5, 0.93, fp) * texture.stripes(lateral, 1.5, 0.93, fp_lat))[:, None]
            asphalt = np.array([0.33, 0.33, 0.35], dtype=np.float32) * (0.4 + 1.2 * g)
            paving = np.array([0.62, 0.58, 0.52], dtype=np.float32) * (0.5 + 0.8 * g) * (0.7 + 0.3 * slabs)
            col = on_road * asphalt + (1.0 - on_road) * paving
            paint = np.maximum.reduce([
                texture.band(lateral, 0.0, 0.08, fp_lat) * texture.stripes(x, 6.0, 0.5, fp),
                texture.band(np.abs(lateral), 3.5, 0.07, fp_lat) * texture.stripes(x + 1.3, 9.0, 0.35, fp),
                texture.band(np.abs(lateral), 7.2, 0.1, fp_lat)])[:, None]
            col = paint * (np.float32(0.8) + 0.15 * g) + (1.0 - paint) * col
            colour[ground] = col
        boxes = ~ground
        if boxes.any():
            ids_b = ids[boxes]
            kind = self.objects.kind[ids_b - 1]
            fp = footprint[boxes]
            a, b = ab[boxes, 0], ab[boxes, 1]
            vertical = f[boxes] < 4
            nb = noise[boxes][:, None]
            col = self.objects.colour[ids_b - 1] * (0.5 + 1.0 * nb)
            glass = np.array([0.16, 0.2, 0.28], dtype=np.float32) * (0.6 + 0.9 * nb)
            # building windows on vertical faces, car windows as a dark band on the sides
            windows = ((kind == BUILDING) & vertical) * texture.band(b, 13.0 + 2.5, 13.0, fp) \
                * texture.stripes(a + 0.7, 3.1, 0.5, fp) * texture.stripes(b, 3.2, 0.45, fp)
            half_h = self.objects.half_extent_m[ids_b - 1, 2]
            car_glass = ((kind == CAR) & vertical) * texture.band(b / half_h, 1.4, 0.35, fp / half_h)
            mix = np.maximum(windows, car_glass)[:, None]
            col = mix * glass + (1.0 - mix) * col
            poles = (kind == POLE)[:, None]
            col = np.where(poles, col * (0.7 + 0.3 * texture.stripes(b, 0.5, 0.5, fp))[:, None], col)
            colour[boxes] = col
        sun = np.clip(normals @ _SUN_DIR.astype(np.float32), 0.0, 1.0)
        light = (0.45 + 0.6 * sun).astype(np.float32)
        image[surf] = colour * light[:, None]
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def iter_frames(config: SynthConfig) -> Iterator[SyntheticFrame]:
    """Render the frames of ``config`` one at a time (constant memory for long sequences)."""
    scene = SyntheticScene(config)
    for index in range(config.num_frames):
        yield scene.render_frame(index)


def render_sequence(config: SynthConfig) -> SyntheticSequence:
    """Render all frames of ``config`` into memory."""
    scene = SyntheticScene(config)
    frames = [scene.render_frame(i) for i in range(config.num_frames)]
    return SyntheticSequence(config=config, intrinsics=scene.intrinsics, frames=frames,
                             dynamic_ids=scene.dynamic_ids.copy(), lead_id=scene.lead_id,
                             object_kinds=scene.object_kinds, randomization=scene.randomization)
