"""Still-camera detection: did the camera move between the reference frame and the current one?

A monocular pose network outputs small, non-zero motions for a camera that does not move (measured
with the bundled model: a still EuRoC camera integrated 5.6 m at 1.2 m/s). :class:`MotionGate`
decides from the images themselves, and the :class:`~depth_sfm_ros.runtime.pipeline.Pipeline` then
publishes no motion for a still pair (identity ``T_prev_cur``, odometry pose kept).

**Image test** (numpy + OpenCV; about 1.2 ms per 640x480 frame on the 2-core development CPU):

1. Both frames as grey at ``gate_width_px`` (160) wide (area-downsampled), in 8-bit grey levels
   [0, 255]; the current frame's mean brightness is matched to the reference's (auto exposure);
   then a 5x5 Gaussian blur (sigma 1 px). All pixel units below are pixels of this small image
   (1 px = 1/160 of the image width = 4 px of a 640-px-wide camera image).
2. Noise level of each frame: ``median(|HH|) / 0.6745`` of the finest Haar diagonal band of the
   unblurred small image (Donoho's estimator). Texture inflates it on real images, which only makes the
   texture test below stricter; ``noise_grey`` = hypot(ref, cur), at least 0.5 grey level.
3. Textured pixels: blurred gradient magnitude ``|grad I| >= 2 * noise_grey * |k|_2`` (``|k|_2`` = 0.29:
   the L2 norm of the blur kernel, the factor by which the blur shrinks white noise); noise alone stays
   below 0.95 of that unit in 99.9 % of the pixels.
4. Per textured pixel, the normal flow ``|I_cur - I_ref| / |grad I|`` in px: the displacement along the
   gradient that explains the change. For a translation by d px it is ``d |cos(angle)|``, whose 75th
   percentile is 0.92 d, so ``motion_px`` = the **75th percentile** over the textured pixels is about the
   displacement (the median would be pulled down by forward motion's slow pixels around the focus of
   expansion). Linearised: large motions saturate around 1.5-3.5 px, far above the threshold.
5. With at least ``min_textured_fraction`` (5 %) of the pixels textured, the image shows camera motion
   when ``motion_px`` exceeds ``threshold_px`` **and** the textured pixels that moved more than
   ``threshold_px`` cover at least ``min_moving_fraction`` (20 %) of the *whole* image: a moving object
   covering less than that cannot make the camera move, however textured it is and however plain the
   background. In a flat view (wall, sky, darkness) the image shows motion when the median
   ``|I_cur - I_ref|`` exceeds ``noise_ratio`` (3) times what noise alone gives
   (``0.6745 * noise_grey * |k|_2``): nothing visible changed means still.

**Pose test**: a pose-net motion is zeroed only when the image says still *and* the motion is small
enough to be network jitter: translation <= ``max_translation_m`` (metres after the metric scale;
network units before one exists) and rotation <= ``max_rotation_deg``. A larger one is kept, since
the images may not show a real motion (a textureless view).

**Reference frame** (kept by the Pipeline): a still frame does not replace the reference, so a slow
motion below the threshold per frame accumulates against it and is detected (and then estimated by
the pose net over the whole baseline) instead of being lost frame by frame. The reference is renewed
after ``max_reference_age_s`` of stillness (slow lighting and scene changes).

**Thresholds** (``threshold_px`` 0.6 px, ``min_moving_fraction`` 0.2), measured with this module on real
frames (reference = the previous frame unless noted; ``motion_px``, then the moving fraction):

- 7-Scenes redkitchen frames 0-9 (handheld Kinect, 640x480, 30 Hz; KinectFusion poses: 0.7-2.3 mm and
  0.07-0.19 deg per frame): 0.15-0.40 px, 0.00-0.04 per pair; against frame 0: 0.16-0.56 px and
  0.00-0.14 for frames 1-8, then 0.79 px / 0.27 at frame 9 (7.3 mm, 0.40 deg from frame 0): moving.
- KITTI odometry (1226x370, 10 Hz, 1.2 m per frame): 1.7-3.3 px, 0.35-0.57 for all 50 pairs.
- DAVIS moving-camera clips: 0.64-3.4 px (the slow pan of "camel" 0.74-1.25 px).
- synthetic 160x120 texture with Gaussian + Poisson noise: still 0.15-0.37 px / <= 0.04; shifted by 1 px
  1.05 px / 0.48, by 2 px 2.1 px / 0.6; a 10 % object moving 3-12 px: moving fraction 0.10-0.14.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import Pose
from ..msgs.encodings import EncodingSpec
from .image_io import grey_at_width, grey_of_checked

_BLUR_KSIZE = 5
_BLUR_SIGMA_PX = 1.0
_KERNEL_1D = cv2.getGaussianKernel(_BLUR_KSIZE, _BLUR_SIGMA_PX).ravel()
BLUR_NOISE_GAIN = float(np.sqrt(np.sum(np.outer(_KERNEL_1D, _KERNEL_1D) ** 2)))  # |k|_2 of the 2-D blur
_MAD_TO_SIGMA = 0.6745  # median |x| of a unit normal
# textured: blurred gradient above this many blurred noise levels (noise alone: below 0.95 in 99.9 % of pixels)
_TEXTURE_SIGMAS = 2.0
_MIN_NOISE_GREY = 0.5  # floor of the noise level, grey levels (8-bit quantisation, JPEG flattened areas)
_BORDER_PX = 3  # ignored border of the small image (blur / gradient edge effects, image shift)
# percentile of the textured pixels' normal flow that measures the motion: for a translation by d px the
# normal flow is d |cos(angle to the gradient)|, whose 75th percentile is 0.92 d; the median (0.71 d) is
# pulled down by forward motion's slow pixels around the focus of expansion
MOTION_PERCENTILE = 75.0


@dataclass(frozen=True)
class MotionGateConfig:
    """Settings of :class:`MotionGate` (see the module docstring for the rule).

    enabled: False = every pair counts as moving (the pose net's motion is always used).
    threshold_px: image motion (75th percentile of the textured pixels' normal flow) above which the image
        shows motion, px of a ``gate_width_px``-wide copy of the image.
    max_translation_m / max_rotation_deg: largest pose-net motion per frame pair that the image may veto.
    gate_width_px: width of the grey copy the test runs on.
    min_textured_fraction: below this fraction of textured pixels the photometric noise test decides.
    min_moving_fraction: fraction of the image that must move for camera motion (moving objects are smaller).
    noise_ratio: flat views: median |difference| / its noise-only median above which something changed.
    max_reference_age_s: a still reference older than this is renewed, s.
    """

    enabled: bool = True
    threshold_px: float = 0.6
    max_translation_m: float = 0.25
    max_rotation_deg: float = 5.0
    gate_width_px: int = 160
    min_textured_fraction: float = 0.05
    min_moving_fraction: float = 0.2
    noise_ratio: float = 3.0
    max_reference_age_s: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, (bool, np.bool_)):
            raise ValueError(f"MotionGateConfig.enabled must be a bool, got {self.enabled!r}")
        positive = {"threshold_px": self.threshold_px, "max_translation_m": self.max_translation_m,
                    "max_rotation_deg": self.max_rotation_deg, "noise_ratio": self.noise_ratio,
                    "max_reference_age_s": self.max_reference_age_s}
        for name, value in positive.items():
            if not _number(value) or not value > 0:
                raise ValueError(f"MotionGateConfig.{name} must be a finite number > 0, got {value!r}")
        for name in ("min_textured_fraction", "min_moving_fraction"):
            value = getattr(self, name)
            if not _number(value) or not 0 < value < 1:
                raise ValueError(f"MotionGateConfig.{name} must be in (0, 1), got {value!r}")
        if isinstance(self.gate_width_px, bool) or int(self.gate_width_px) != self.gate_width_px \
                or not 16 <= self.gate_width_px <= 2048:
            raise ValueError(f"MotionGateConfig.gate_width_px must be an integer in [16, 2048], "
                             f"got {self.gate_width_px!r}")


def _number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


@dataclass(frozen=True)
class ImageMotion:
    """What the images say about one (reference, current) pair.

    motion_px: 75th percentile of the textured pixels' normal flow, px at the gate width (NaN in a flat view).
    moving_fraction: fraction of the image that is textured and moved more than ``threshold_px``.
    textured_fraction: fraction of the image whose gradient is above the noise.
    noise_grey: noise level of the difference, 8-bit grey levels.
    change_ratio: median |difference| / its noise-only median (~1 for noise alone).
    basis: "texture" (normal-flow test) or "flat" (noise test).
    moving: the image shows camera motion.
    """

    motion_px: float
    moving_fraction: float
    textured_fraction: float
    noise_grey: float
    change_ratio: float
    basis: str
    moving: bool


@dataclass(frozen=True)
class MotionDecision:
    """The gate's verdict for one frame pair.

    still: publish no motion for this pair.
    reason: image_still | image_motion | pose_motion (image still, but the pose net's motion is above
        the caps) | image_only (no pose net output: the image decides alone).
    translation_m / rotation_deg: the pose net's motion for the pair (after scale), NaN without a pose.
    """

    still: bool
    reason: str
    image: ImageMotion
    translation_m: float = math.nan
    rotation_deg: float = math.nan


def haar_noise_grey(grey: np.ndarray) -> float:
    """Noise standard deviation of ``grey`` (h, w), same units, from the finest Haar diagonal band."""
    h, w = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
    if h < 2 or w < 2:
        return 0.0
    g = grey[:h, :w]
    diagonal = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) * np.float32(0.5)
    return float(np.median(np.abs(diagonal))) / _MAD_TO_SIGMA


class MotionGate:
    """Stateless still-camera test; the Pipeline keeps the reference frame's :meth:`grey` image."""

    def __init__(self, config: MotionGateConfig | None = None) -> None:
        self.config = config or MotionGateConfig()

    def grey(self, image: np.ndarray, encoding: str, value_range: tuple[float, float] | None = None) -> np.ndarray:
        """The small grey copy of a raw camera image that :meth:`image_motion` compares:
        (h, gate_width_px) float32 in 8-bit grey levels [0, 255], h <= 4 * gate_width_px."""
        width = self.config.gate_width_px
        return grey_at_width(image, encoding, width, value_range, max_height=4 * width) * np.float32(255.0)

    def grey_checked(self, image: np.ndarray, spec: EncodingSpec,
                     value_range: tuple[float, float] | None = None) -> np.ndarray:
        """:meth:`grey` of an image :func:`~depth_sfm_ros.runtime.image_io.check_image` has checked already
        ((H, W, C) and its spec; the Pipeline checks each camera image once)."""
        width = self.config.gate_width_px
        return grey_of_checked(image, spec, width, value_range, max_height=4 * width) * np.float32(255.0)

    def image_motion(self, ref_grey: np.ndarray, cur_grey: np.ndarray) -> ImageMotion:
        """Compare two :meth:`grey` images of one camera (same shape); see the module docstring."""
        if ref_grey.shape != cur_grey.shape or ref_grey.ndim != 2:
            raise ValueError(f"grey images must have one (h, w) shape, got {ref_grey.shape} and {cur_grey.shape}")
        cfg = self.config
        noise = max(math.hypot(haar_noise_grey(ref_grey), haar_noise_grey(cur_grey)), _MIN_NOISE_GREY)
        ksize = (_BLUR_KSIZE, _BLUR_KSIZE)
        ref = cv2.GaussianBlur(ref_grey, ksize, _BLUR_SIGMA_PX)
        cur = cv2.GaussianBlur(cur_grey, ksize, _BLUR_SIGMA_PX)
        mean_cur = float(cur.mean())
        if mean_cur > 1e-3:
            cur *= np.float32(float(ref.mean()) / mean_cur)  # auto exposure / gain change
        diff = np.abs(cur - ref)
        mid = (cur + ref) * np.float32(0.5)
        # Sobel / 8 = central difference of the [1 2 1]-smoothed image: grey levels per pixel
        grad = cv2.magnitude(cv2.Sobel(mid, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(mid, cv2.CV_32F, 0, 1, ksize=3))
        grad *= np.float32(0.125)
        b = min(_BORDER_PX, diff.shape[0] // 4, diff.shape[1] // 4)
        if b:
            diff, grad = diff[b:-b, b:-b], grad[b:-b, b:-b]
        blurred_noise = noise * BLUR_NOISE_GAIN
        change_ratio = float(np.median(diff)) / (_MAD_TO_SIGMA * blurred_noise)
        textured = grad >= np.float32(_TEXTURE_SIGMAS * blurred_noise)
        textured_fraction = float(textured.mean())
        if textured_fraction >= cfg.min_textured_fraction:
            normal_flow = diff[textured] / grad[textured]
            motion_px = float(np.percentile(normal_flow, MOTION_PERCENTILE))
            moving_fraction = float(np.count_nonzero(normal_flow > cfg.threshold_px)) / diff.size
            moving = motion_px > cfg.threshold_px and moving_fraction >= cfg.min_moving_fraction
            basis = "texture"
        else:
            motion_px, moving_fraction = math.nan, 0.0
            moving = change_ratio > cfg.noise_ratio
            basis = "flat"
        return ImageMotion(motion_px=motion_px, moving_fraction=moving_fraction, textured_fraction=textured_fraction,
                           noise_grey=noise, change_ratio=change_ratio, basis=basis, moving=bool(moving))

    def decide(self, image: ImageMotion, T_prev_cur_m: Pose | None) -> MotionDecision:
        """Combine the image test with the pose net's (metric-scaled) motion ``T_prev_cur_m``."""
        cfg = self.config
        if T_prev_cur_m is None:
            return MotionDecision(still=not image.moving, reason="image_motion" if image.moving else "image_only",
                                  image=image)
        translation_m = float(np.linalg.norm(T_prev_cur_m.t))
        rotation_deg = math.degrees(T_prev_cur_m.rotation_angle())
        if image.moving:
            reason = "image_motion"
        elif translation_m > cfg.max_translation_m or rotation_deg > cfg.max_rotation_deg:
            reason = "pose_motion"
        else:
            reason = "image_still"
        return MotionDecision(still=reason == "image_still", reason=reason, image=image,
                              translation_m=translation_m, rotation_deg=rotation_deg)
