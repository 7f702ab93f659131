"""Batched, differentiable camera geometry in torch: the one implementation used by training,
export and evaluation.

Conventions (see also :mod:`depth_sfm_ros.geometry.camera` and :mod:`.pose`):

* pixel (u, v) is the *centre* of column u, row v; images span [-0.5, W - 0.5];
* ``grid_sample`` is always called with ``align_corners=False`` and coordinates normalised by
  :func:`pixels_to_grid` (u = -0.5 -> -1, u = W - 0.5 -> +1), so the two never disagree;
* points are in the optical frame (x right, y down, z forward), depth is z in metres;
* ``T_a_b`` (B, 4, 4) maps points from frame b to frame a.

Shapes: B batch, C channels, H x W image. K is (B, 3, 3) at the resolution of the tensor it
is used with.

Mixed precision: inside ``torch.autocast`` the geometry (back-projection, transforms, projection, warps,
pose conversions) still runs in float32 (:func:`float32_geometry`): autocast would run its matmuls in
fp16 / bf16, whose ~3 significant digits put a projected point tenths of a pixel off at KITTI width, and a
forward warp then splats it on the wrong pixel. Outside autocast the functions keep their inputs' dtype.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, TypeVar

import torch
import torch.nn.functional as F

__all__ = [
    "pixel_grid", "pixels_to_grid", "backproject", "project", "transform_points",
    "pose_vec_to_matrix", "matrix_to_pose_vec", "invert_transform", "scale_intrinsics",
    "inverse_warp", "forward_warp", "depth_to_normals", "InverseWarpResult", "ForwardWarpResult",
    "float32_geometry",
]


_F = TypeVar("_F", bound=Callable[..., Any])


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` ("cpu", "cuda", ...) in this thread."""
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cpu":
            return bool(torch.is_autocast_cpu_enabled())
        return device_type == "cuda" and bool(torch.is_autocast_enabled())


def float32_geometry(fn: _F) -> _F:
    """Decorator: under ``torch.autocast`` for the inputs' device, run ``fn`` with autocast off and its
    floating-point tensor arguments (fp16 / bf16 / fp32) as float32; otherwise call it unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensor = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if tensor is None or not _autocast_enabled(tensor.device.type):
            return fn(*args, **kwargs)

        def fp32(a: Any) -> Any:
            return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

        with torch.autocast(device_type=tensor.device.type, enabled=False):
            return fn(*[fp32(a) for a in args], **{k: fp32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def _check(t: torch.Tensor, name: str, ndim: int, dim1: int | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim or (dim1 is not None and t.shape[1] != dim1):
        want = f"{ndim}-D" + (f" with {dim1} channels" if dim1 is not None else "")
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates (3, H, W): rows (u, v, 1).

    >>> pixel_grid(2, 3)[:, 1, 2].tolist()
    [2.0, 1.0, 1.0]
    """
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], dim=0)


def pixels_to_grid(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (B, H', W', 2) -> ``grid_sample`` coordinates for ``align_corners=False``.

    >>> pixels_to_grid(torch.tensor([[[[0.0, 0.0]]]]), 2, 4).tolist()
    [[[[-0.75, -0.5]]]]
    """
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=uv.dtype, device=uv.device)
    return (uv + 0.5) * scale - 1.0


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """K (B, 3, 3) of an image resized by (sx, sy) (pixel-centre convention)."""
    K = K.clone()
    K[:, 0, 0] = K[:, 0, 0] * sx
    K[:, 1, 1] = K[:, 1, 1] * sy
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
    return K


@float32_geometry
def backproject(depth_m: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) in metres -> camera-frame points (B, 3, H, W).

    >>> K = torch.tensor([[[2.0, 0, 1], [0, 2.0, 1], [0, 0, 1]]])
    >>> backproject(torch.full((1, 1, 3, 3), 4.0), K)[0, :, 0, 0].tolist()
    [-2.0, -2.0, 4.0]
    """
    _check(depth_m, "depth_m", 4, 1)
    _check(K, "K", 3)
    b, _, h, w = depth_m.shape
    rays = torch.linalg.inv(K) @ pixel_grid(h, w, depth_m.device, depth_m.dtype).reshape(1, 3, -1)
    return (rays * depth_m.reshape(b, 1, -1)).reshape(b, 3, h, w)


@float32_geometry
def transform_points(T_a_b: torch.Tensor, points_b: torch.Tensor) -> torch.Tensor:
    """Apply T_a_b (B, 4, 4) to points (B, 3, H, W) or (B, 3, N)."""
    _check(T_a_b, "T_a_b", 3)
    shape = points_b.shape
    flat = points_b.reshape(shape[0], 3, -1)
    return (T_a_b[:, :3, :3] @ flat + T_a_b[:, :3, 3:]).reshape(shape)


@float32_geometry
def project(points: torch.Tensor, K: torch.Tensor, min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame points (B, 3, H, W) -> (pixel coordinates (B, H, W, 2), depth z (B, 1, H, W)).

    z is clamped below at ``min_depth`` for the division only; callers mask ``z <= min_depth``.
    """
    _check(points, "points", 4, 3)
    b, _, h, w = points.shape
    cam = (K @ points.reshape(b, 3, -1)).reshape(b, 3, h, w)
    z = points[:, 2:3]
    uv = cam[:, :2] / z.clamp(min=min_depth)
    return uv.permute(0, 2, 3, 1), z


@float32_geometry
def pose_vec_to_matrix(vec: torch.Tensor) -> torch.Tensor:
    """Pose vectors (B, 6) ``[tx, ty, tz, rx, ry, rz]`` (axis-angle, radians) -> (B, 4, 4).

    Differentiable everywhere, including zero rotation (Taylor expansion below 1e-4 rad).
    """
    _check(vec, "vec", 2, None)
    if vec.shape[1] != 6:
        raise ValueError(f"pose vectors must be (B, 6), got {tuple(vec.shape)}")
    t, w = vec[:, :3], vec[:, 3:]
    theta2 = (w * w).sum(dim=1, keepdim=True)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)              # sin(t)/t
    b_ = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)  # (1-cos t)/t^2
    zero = torch.zeros_like(w[:, 0])
    wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
    skew = torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], dim=1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=vec.dtype, device=vec.device).expand_as(skew)
    R = eye + a.unsqueeze(-1) * skew + b_.unsqueeze(-1) * (skew @ skew)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=vec.dtype, device=vec.device).expand(vec.shape[0], 1, 4)
    return torch.cat([torch.cat([R, t.unsqueeze(-1)], dim=2), bottom], dim=1)


@float32_geometry
def matrix_to_pose_vec(T: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) -> (B, 6) ``[t, axis-angle]``; rotation angles must be below pi."""
    _check(T, "T", 3)
    R = T[:, :3, :3]
    cos = ((R.diagonal(dim1=1, dim2=2).sum(-1) - 1.0) / 2.0).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    theta = torch.acos(cos)
    vee = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], dim=1)
    sin = torch.sin(theta)
    factor = torch.where(sin.abs() < 1e-6, 0.5 + theta * theta / 12.0, theta / (2.0 * sin.clamp(min=1e-12)))
    return torch.cat([T[:, :3, 3], vee * factor.unsqueeze(-1)], dim=1)


@float32_geometry
def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (B, 4, 4), without a general matrix inverse."""
    R_t = T[:, :3, :3].transpose(1, 2)
    t = -R_t @ T[:, :3, 3:]
    bottom = T[:, 3:, :]
    return torch.cat([torch.cat([R_t, t], dim=2), bottom], dim=1)


class InverseWarpResult(NamedTuple):
    image: torch.Tensor        # (B, C, H, W) source image sampled at the target's pixels
    valid: torch.Tensor        # (B, 1, H, W) float 1 where the point projects inside the source, in front
    depth_in_source: torch.Tensor  # (B, 1, H, W) z of the target's points in the source frame (SC-Depth)
    uv_source: torch.Tensor    # (B, H, W, 2) pixel coordinates in the source image


@float32_geometry
def inverse_warp(image_src: torch.Tensor, depth_tgt_m: torch.Tensor, T_src_tgt: torch.Tensor,
                 K_tgt: torch.Tensor, K_src: torch.Tensor | None = None,
                 padding_mode: str = "zeros", flow3d_src: torch.Tensor | None = None) -> InverseWarpResult:
    """Synthesize the target view from a source image (SfMLearner / monodepth2 view synthesis).

    Each target pixel is back-projected with its depth, moved into the source camera by
    ``T_src_tgt`` (plus an optional residual 3D flow, seed 000's flow net: ``p_src = T p + F``) and
    bilinearly sampled there. Shapes: image_src (B, C, Hs, Ws), depth_tgt_m (B, 1, H, W),
    T_src_tgt (B, 4, 4), K_tgt (B, 3, 3) at H x W, K_src at Hs x Ws (defaults to K_tgt),
    flow3d_src (B, 3, H, W) in the source camera frame, same units as depth.
    """
    _check(image_src, "image_src", 4)
    K_src = K_tgt if K_src is None else K_src
    points_src = transform_points(T_src_tgt, backproject(depth_tgt_m, K_tgt))
    if flow3d_src is not None:
        if flow3d_src.shape != points_src.shape:
            raise ValueError(f"flow3d_src must be {tuple(points_src.shape)}, got {tuple(flow3d_src.shape)}")
        points_src = points_src + flow3d_src
    uv, z = project(points_src, K_src)
    hs, ws = image_src.shape[-2:]
    grid = pixels_to_grid(uv, hs, ws)
    warped = F.grid_sample(image_src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    inside = (grid.abs() <= 1.0).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    valid = (inside & (z > 1e-3)).to(image_src.dtype)
    return InverseWarpResult(warped, valid, z, uv)


class ForwardWarpResult(NamedTuple):
    image: torch.Tensor  # (B, C, H, W) splatted values, 0 in holes
    depth: torch.Tensor  # (B, 1, H, W) z of the nearest splatted point in the target frame, 0 in holes
    valid: torch.Tensor  # (B, 1, H, W) 1 where at least one source point landed


@float32_geometry
def forward_warp(image_src: torch.Tensor, depth_src_m: torch.Tensor, T_tgt_src: torch.Tensor,
                 K_src: torch.Tensor, upsample: int = 2, K_tgt: torch.Tensor | None = None,
                 out_size: tuple[int, int] | None = None) -> ForwardWarpResult:
    """Differentiable forward projection (splatting) of a source image into a target view.

    Seed 001: each source pixel is moved by its depth and ``T_tgt_src`` and written to the
    nearest target pixel; where several land on one pixel the nearest (smallest z) wins (ties
    are averaged). The depth map and image are first upsampled by ``upsample`` (with K scaled
    to match) so that the splat leaves few holes. Gradients flow to the splatted values and to
    the warped depth; the pixel assignment itself is discrete.

    Shapes: image_src (B, C, H, W), depth_src_m (B, 1, H, W), T_tgt_src (B, 4, 4), K_src (B, 3, 3).
    Output at ``out_size`` (H, W of the target, default the source's) with ``K_tgt`` (default K_src).
    """
    _check(image_src, "image_src", 4)
    _check(depth_src_m, "depth_src_m", 4, 1)
    if upsample < 1:
        raise ValueError(f"upsample must be >= 1, got {upsample}")
    b, c, h, w = image_src.shape
    h_out, w_out = out_size if out_size is not None else (h, w)
    K_tgt = K_src if K_tgt is None else K_tgt
    if upsample > 1:
        image_up = F.interpolate(image_src, scale_factor=upsample, mode="nearest")
        depth_up = F.interpolate(depth_src_m, scale_factor=upsample, mode="nearest")
        K_up = scale_intrinsics(K_src, float(upsample), float(upsample))
    else:
        image_up, depth_up, K_up = image_src, depth_src_m, K_src
    points_tgt = transform_points(T_tgt_src, backproject(depth_up, K_up))
    uv, z = project(points_tgt, K_tgt)
    u = torch.round(uv[..., 0]).long().reshape(b, -1)
    v = torch.round(uv[..., 1]).long().reshape(b, -1)
    z_flat = z.reshape(b, -1)
    valid = (u >= 0) & (u < w_out) & (v >= 0) & (v < h_out) & (z_flat > 1e-3) & (depth_up.reshape(b, -1) > 0)
    batch_offset = (torch.arange(b, device=u.device) * (h_out * w_out)).unsqueeze(1)
    target = (v.clamp(0, h_out - 1) * w_out + u.clamp(0, w_out - 1) + batch_offset)[valid]
    z_valid = z_flat[valid]

    # z-buffer: nearest depth per target pixel, then keep only the points at that depth.
    z_buffer = torch.full((b * h_out * w_out,), float("inf"), dtype=z.dtype, device=z.device)
    z_buffer = z_buffer.scatter_reduce(0, target, z_valid.detach(), reduce="amin", include_self=True)
    winner = z_valid.detach() <= z_buffer[target] * (1.0 + 1e-6)
    target_w = target[winner]

    values = image_up.reshape(b, c, -1).permute(0, 2, 1)[valid][winner]  # (N, C)
    count = torch.zeros(b * h_out * w_out, dtype=image_src.dtype, device=image_src.device)
    count = count.index_add(0, target_w, torch.ones_like(target_w, dtype=image_src.dtype))
    image_sum = torch.zeros(b * h_out * w_out, c, dtype=image_src.dtype, device=image_src.device)
    image_sum = image_sum.index_add(0, target_w, values)
    depth_sum = torch.zeros(b * h_out * w_out, dtype=z.dtype, device=z.device)
    depth_sum = depth_sum.index_add(0, target_w, z_valid[winner])
    hit = count > 0
    denom = count.clamp(min=1.0)
    image_out = (image_sum / denom.unsqueeze(1)).reshape(b, h_out, w_out, c).permute(0, 3, 1, 2)
    depth_out = (depth_sum / denom).reshape(b, 1, h_out, w_out)
    return ForwardWarpResult(image_out, depth_out, hit.reshape(b, 1, h_out, w_out).to(image_src.dtype))


@float32_geometry
def depth_to_normals(depth_m: torch.Tensor, K: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit surface normals (B, 3, H, W) in the camera frame from depth (B, 1, H, W).

    Cross product of the central differences of the back-projected points along x and y
    (replicate-padded at the border); normals point towards the camera (negative z side).
    """
    points = backproject(depth_m, K)
    padded = F.pad(points, (1, 1, 1, 1), mode="replicate")
    dx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) * 0.5
    dy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) * 0.5
    normals = torch.cross(dy, dx, dim=1)  # fronto-parallel plane -> (0, 0, -1)
    return normals / normals.norm(dim=1, keepdim=True).clamp(min=eps)
