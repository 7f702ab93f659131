"""Camera / ISP simulation of the randomised profiles: radiance (H, W, 3) float32 -> uint8 RGB.

Chain, in order: motion blur along the image motion of the static scene during the exposure,
exposure gain (sequence EV + per-frame auto-exposure jitter), white balance, vignetting, sensor
noise (shot noise with variance proportional to the signal + Gaussian read noise), gamma,
quantisation to 8 bits, JPEG re-encoding (OpenCV) at the sequence quality +- 3 per frame.
Sequence parameters come from :class:`.randomization.PhotometricDraw`; the per-frame ones from a
generator seeded by (seed, profile, frame index), so each frame is deterministic on its own.
None of it touches the ground truth (depth, masks, instances, poses, intrinsics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose, backproject_np

from .randomization import PhotometricDraw

MAX_BLUR_SAMPLES = 7
SKY_DEPTH_M = 1e6  # depth used for sky pixels when computing the image motion (rotation only)


@dataclass(frozen=True)
class FramePhotometric:
    """Photometric parameters of one frame: gain (linear), white-balance gains (3,) RGB, gamma,
    vignetting strength, shot-noise variance per unit intensity, read-noise std, JPEG quality."""

    gain: float
    wb_gains: tuple[float, float, float]
    gamma: float
    vignetting: float
    shot_noise_var: float
    read_noise_std: float
    jpeg_quality: int


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) float32 pixel-centre coordinates (H, W) each; cached, read-only."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    v.setflags(write=False)
    u.setflags(write=False)
    return v, u


def frame_photometric(draw: PhotometricDraw, rng: np.random.Generator) -> FramePhotometric:
    """Per-frame parameters: the sequence values plus auto-exposure jitter and JPEG quality jitter."""
    jitter_ev = float(rng.uniform(-1.0, 1.0)) * draw.exposure_jitter_ev
    quality = int(np.clip(round(draw.jpeg_quality + float(rng.uniform(-3.0, 3.0))), 1, 100))
    return FramePhotometric(gain=2.0 ** (draw.exposure_ev + jitter_ev), wb_gains=(draw.wb_gain_r, 1.0, draw.wb_gain_b),
                            gamma=draw.gamma, vignetting=draw.vignetting, shot_noise_var=draw.shot_noise_var,
                            read_noise_std=draw.read_noise_std, jpeg_quality=quality)


def image_motion_px(depth_m: np.ndarray, intrinsics: Intrinsics, T_other_cam: Pose) -> np.ndarray:
    """Flow (H, W, 2) in pixels of the static scene from this camera to another pose of it.

    depth_m (H, W) metres (NaN / inf = sky, treated as very far: rotation only); ``T_other_cam``
    maps points of this camera frame into the other. Points that end behind the other camera get 0."""
    depth = np.where(np.isfinite(depth_m), depth_m, SKY_DEPTH_M).astype(np.float32)
    points = T_other_cam.transform_points(backproject_np(depth, intrinsics))
    z = points[..., 2]
    ok = z > 1e-2
    z_safe = np.where(ok, z, 1.0)
    u = intrinsics.fx * points[..., 0] / z_safe + intrinsics.cx
    v = intrinsics.fy * points[..., 1] / z_safe + intrinsics.cy
    grid_v, grid_u = _pixel_grid(intrinsics.height, intrinsics.width)
    flow = np.stack([u - grid_u, v - grid_v], axis=-1)
    flow[~ok] = 0.0
    return flow.astype(np.float32)


def motion_blur(image: np.ndarray, half_flow_px: np.ndarray) -> np.ndarray:
    """Average of the image sampled along -half_flow .. +half_flow around each pixel (box shutter).

    image (H, W, 3) float32; half_flow_px (H, W, 2): image motion over half the exposure. The number
    of samples grows with the largest motion (2 per pixel of travel, at most 7); < 0.25 px: unchanged."""
    import cv2

    longest = float(np.abs(half_flow_px).max(initial=0.0))
    if longest < 0.25:
        return image
    samples = int(min(MAX_BLUR_SAMPLES, max(3, math.ceil(2.0 * 2.0 * longest) + 1)))
    grid_v, grid_u = _pixel_grid(image.shape[0], image.shape[1])
    out = np.zeros_like(image)
    for s in np.linspace(-1.0, 1.0, samples, dtype=np.float32):
        out += cv2.remap(image, grid_u + s * half_flow_px[..., 0], grid_v + s * half_flow_px[..., 1],
                         interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out / np.float32(samples)


def apply_gain_and_white_balance(image: np.ndarray, gain: float, wb_gains: tuple[float, float, float]) -> np.ndarray:
    """Per-channel multiplication by gain * wb_gains (3,)."""
    return image * (np.float32(gain) * np.asarray(wb_gains, dtype=np.float32))


def vignetting_factor(height: int, width: int, strength: float) -> np.ndarray:
    """(H, W, 1) float32: 1 - strength * r^2 with r = 1 at the image corners."""
    v, u = _pixel_grid(height, width)
    ru, rv = (u - (width - 1) / 2) / (width / 2), (v - (height - 1) / 2) / (height / 2)
    return (1.0 - np.float32(strength) * (ru * ru + rv * rv) / 2.0)[..., None]


def add_sensor_noise(image: np.ndarray, shot_noise_var: float, read_noise_std: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent Gaussian noise: std = sqrt(shot_noise_var * max(I, 0) + read_noise_std^2)."""
    std = np.sqrt(np.float32(shot_noise_var) * np.maximum(image, 0.0) + np.float32(read_noise_std) ** 2)
    return image + std * rng.standard_normal(image.shape, dtype=np.float32)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Clip to [0, 1] and apply the tone exponent ``gamma``."""
    return np.power(np.clip(image, 0.0, 1.0), np.float32(gamma))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding (values outside are clipped)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg_roundtrip(image_rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode an RGB uint8 image (H, W, 3) as JPEG at ``quality`` (1-100) and decode it again."""
    import cv2

    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def camera_image(radiance: np.ndarray, params: FramePhotometric, rng: np.random.Generator,
                 half_flow_px: np.ndarray | None = None) -> np.ndarray:
    """The whole chain: radiance (H, W, 3) float32 -> uint8 RGB (H, W, 3). ``half_flow_px`` (H, W, 2):
    image motion over half the exposure time (None: no motion blur)."""
    image = radiance if half_flow_px is None else motion_blur(radiance, half_flow_px)
    image = apply_gain_and_white_balance(image, params.gain, params.wb_gains)
    image = image * vignetting_factor(image.shape[0], image.shape[1], params.vignetting)
    image = add_sensor_noise(image, params.shot_noise_var, params.read_noise_std, rng)
    return jpeg_roundtrip(to_uint8(apply_gamma(image, params.gamma)), params.jpeg_quality)
