"""Geometry core: analytic cases, round trips, kornia as an independent oracle, gradcheck."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_sfm_ros.geometry import Intrinsics, Pose, backproject_np, euler_to_matrix, matrix_to_euler
from depth_sfm_ros.geometry import ops
from depth_sfm_ros.geometry.pose import (axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quaternion,
                                         quaternion_to_matrix)

DTYPES = [torch.float32, torch.float64]


def _K(batch: int, fx=60.0, fy=55.0, cx=31.5, cy=11.5, dtype=torch.float64) -> torch.Tensor:
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def _textured(batch: int, h: int, w: int, dtype) -> torch.Tensor:
    """A smooth but detailed image (bilinear sampling of it is accurate)."""
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    chans = [torch.sin(u / 3.0 + c) * torch.cos(v / 4.0 - c) for c in range(3)]
    img = 0.5 + 0.4 * torch.stack(chans, 0)
    return img.expand(batch, 3, h, w).clone()


# ---------------------------------------------------------------- numpy: Intrinsics and Pose
class TestIntrinsics:
    def test_scale_then_back_is_identity(self):
        K = Intrinsics(fx=721.5, fy=721.5, cx=609.6, cy=172.9, width=1242, height=375)
        back = K.scaled(640, 192).scaled(1242, 375)
        assert np.allclose(back.K, K.K)

    def test_scaling_keeps_pixel_centres_consistent(self):
        # A 3D point projects to the same *relative* image position before and after scaling.
        K = Intrinsics(fx=100.0, fy=80.0, cx=63.5, cy=31.5, width=128, height=64)
        half = K.scaled(64, 32)
        p = np.array([0.7, -0.3, 5.0])
        uv = (K.K @ p)[:2] / p[2]
        uv_half = (half.K @ p)[:2] / p[2]
        assert np.allclose((uv + 0.5) / 2 - 0.5, uv_half)

    def test_crop_and_flip(self):
        K = Intrinsics(fx=100.0, fy=100.0, cx=50.0, cy=40.0, width=120, height=90)
        c = K.cropped(10, 20, 100, 60)
        assert (c.cx, c.cy, c.width, c.height) == (40.0, 20.0, 100, 60)
        f = K.flipped_horizontally()
        assert f.cx == 119 - 50.0
        with pytest.raises(ValueError, match="outside"):
            K.cropped(50, 0, 100, 10)

    @pytest.mark.parametrize("bad", [dict(fx=0.0), dict(fy=-1.0), dict(cx=float("nan")), dict(fx=float("inf")),
                                     dict(width=0), dict(height=-5)])
    def test_invalid_values_rejected(self, bad):
        kwargs = dict(fx=100.0, fy=100.0, cx=50.0, cy=40.0, width=120, height=90)
        kwargs.update(bad)
        with pytest.raises(ValueError):
            Intrinsics(**kwargs)

    def test_from_normalized_matches_kitti_convention(self):
        K = Intrinsics.from_normalized(0.58, 1.92, 0.5, 0.5, 640, 192)
        assert math.isclose(K.fx, 0.58 * 640) and math.isclose(K.cx, 319.5) and math.isclose(K.cy, 95.5)

    def test_backproject_np_matches_torch(self):
        K = Intrinsics(fx=60.0, fy=55.0, cx=31.5, cy=11.5, width=64, height=24)
        depth = np.random.default_rng(0).uniform(1, 20, (24, 64)).astype(np.float32)
        pts_np = backproject_np(depth, K)
        pts_t = ops.backproject(torch.from_numpy(depth)[None, None], torch.from_numpy(K.K).float()[None])
        assert np.allclose(pts_np, pts_t[0].permute(1, 2, 0).numpy(), atol=1e-4)


class TestPose:
    def test_axis_angle_round_trip(self):
        rng = np.random.default_rng(1)
        for _ in range(50):
            w = rng.normal(size=3)
            w *= rng.uniform(0, 3.0) / np.linalg.norm(w)
            assert np.allclose(matrix_to_axis_angle(axis_angle_to_matrix(w)), w, atol=1e-9)

    def test_quaternion_and_euler_round_trips(self):
        rng = np.random.default_rng(2)
        for _ in range(50):
            R = axis_angle_to_matrix(rng.normal(size=3))
            assert np.allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-9)
            roll, pitch, yaw = rng.uniform(-3, 3), rng.uniform(-1.5, 1.5), rng.uniform(-3, 3)
            assert np.allclose(matrix_to_euler(euler_to_matrix(roll, pitch, yaw)), (roll, pitch, yaw), atol=1e-9)

    def test_yaw_rotates_x_into_y(self):
        assert np.allclose(euler_to_matrix(0, 0, np.pi / 2) @ [1, 0, 0], [0, 1, 0])

    def test_composition_and_inverse(self):
        T_a_b = Pose.from_vec([1, 2, 3, 0.1, -0.2, 0.3])
        T_b_c = Pose.from_vec([-1, 0.5, 2, 0.0, 0.4, 0.0])
        p_c = np.array([[0.3, 0.2, 5.0]])
        assert np.allclose((T_a_b @ T_b_c).transform_points(p_c), T_a_b.transform_points(T_b_c.transform_points(p_c)))
        assert np.allclose((T_a_b.inverse() @ T_a_b).matrix, np.eye(4))
        assert np.allclose(Pose.from_vec(T_a_b.to_vec()).matrix, T_a_b.matrix)

    def test_rejects_bad_matrices(self):
        with pytest.raises(ValueError):
            Pose(np.eye(3))
        m = np.eye(4)
        m[0, 3] = np.nan
        with pytest.raises(ValueError):
            Pose(m)


# ---------------------------------------------------------------- torch ops: analytic cases
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
def test_pose_vec_matches_numpy_and_round_trips(batch, dtype):
    vec = torch.randn(batch, 6, dtype=dtype) * 0.5
    T = ops.pose_vec_to_matrix(vec)
    for i in range(batch):
        assert np.allclose(T[i].double().numpy(), Pose.from_vec(vec[i].double().numpy()).matrix, atol=1e-5)
    assert torch.allclose(ops.matrix_to_pose_vec(T), vec, atol=1e-4 if dtype == torch.float32 else 1e-9)
    assert torch.allclose(ops.invert_transform(T) @ T, torch.eye(4, dtype=dtype).expand_as(T), atol=1e-5)


def test_pose_vec_zero_rotation_is_identity():
    T = ops.pose_vec_to_matrix(torch.zeros(2, 6))
    assert torch.equal(T, torch.eye(4).expand(2, 4, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_backproject_round_trip(dtype):
    K = _K(2, dtype=dtype)
    depth = torch.rand(2, 1, 24, 64, dtype=dtype) * 30 + 1
    uv, z = ops.project(ops.backproject(depth, K), K)
    grid = ops.pixel_grid(24, 64, dtype=dtype)[:2].permute(1, 2, 0)
    assert torch.allclose(uv, grid.expand_as(uv), atol=1e-3)
    assert torch.allclose(z, depth)


def test_identity_warp_reproduces_image():
    img = _textured(2, 24, 64, torch.float64)
    res = ops.inverse_warp(img, torch.full((2, 1, 24, 64), 7.0, dtype=torch.float64),
                           torch.eye(4, dtype=torch.float64).expand(2, 4, 4), _K(2))
    assert torch.allclose(res.image, img, atol=1e-9)
    assert bool(res.valid.all())


def test_pure_translation_shifts_by_focal_times_baseline_over_depth():
    """Camera moves right by b: a point at depth Z appears fx*b/Z pixels further left in the source."""
    h, w, depth, baseline, fx = 24, 64, 10.0, 0.5, 60.0
    img = _textured(1, h, w, torch.float64)
    T_src_tgt = torch.eye(4, dtype=torch.float64)[None].clone()
    T_src_tgt[0, 0, 3] = -baseline  # source camera is +baseline along x: points move -baseline in its frame
    res = ops.inverse_warp(img, torch.full((1, 1, h, w), depth, dtype=torch.float64), T_src_tgt, _K(1, fx=fx))
    shift = fx * baseline / depth  # 3 pixels
    assert torch.allclose(res.uv_source[0, :, :, 0] - ops.pixel_grid(h, w, dtype=torch.float64)[0],
                          torch.full((h, w), -shift, dtype=torch.float64))
    # Sampled values equal the image shifted by exactly 3 columns; the first 3 columns fall outside.
    assert torch.allclose(res.image[..., 3:], img[..., :-3], atol=1e-9)
    assert res.valid[0, 0, :, :3].sum() == 0 and bool(res.valid[0, 0, :, 3:].all())


def test_pure_rotation_is_depth_independent():
    """A rotation-only warp is a homography: the result must not depend on depth."""
    img = _textured(1, 24, 64, torch.float64)
    T = ops.pose_vec_to_matrix(torch.tensor([[0, 0, 0, 0.01, 0.03, 0.0]], dtype=torch.float64))
    near = ops.inverse_warp(img, torch.full((1, 1, 24, 64), 2.0, dtype=torch.float64), T, _K(1))
    far = ops.inverse_warp(img, torch.full((1, 1, 24, 64), 50.0, dtype=torch.float64), T, _K(1))
    assert torch.allclose(near.image, far.image, atol=1e-9)
    # ... and equals the analytic homography K R K^-1
    K = _K(1)[0]
    H = K @ T[0, :3, :3] @ torch.linalg.inv(K)
    p = torch.tensor([40.0, 10.0, 1.0], dtype=torch.float64)
    q = H @ p
    assert torch.allclose(near.uv_source[0, 10, 40], q[:2] / q[2], atol=1e-9)


def test_forward_warp_lands_where_projection_says():
    h, w = 12, 16
    K = _K(1, fx=20.0, fy=20.0, cx=7.5, cy=5.5)
    depth = torch.full((1, 1, h, w), 4.0, dtype=torch.float64)
    img = torch.zeros(1, 1, h, w, dtype=torch.float64)
    img[0, 0, 5, 7] = 1.0  # one bright pixel
    T_tgt_src = torch.eye(4, dtype=torch.float64)[None].clone()
    T_tgt_src[0, 0, 3] = 0.4  # points move +0.4 m in x: +fx*0.4/4 = +2 pixels
    res = ops.forward_warp(img, depth, T_tgt_src, K, upsample=1)
    assert res.image[0, 0, 5, 9] == 1.0 and res.image.sum() == 1.0
    assert torch.allclose(res.depth[0, 0, 5, 9], torch.tensor(4.0, dtype=torch.float64))
    assert res.valid[0, 0, :, :2].sum() == 0  # nothing lands in the two leftmost columns
    # pre-upsampling fills every pixel for a pure translation
    filled = ops.forward_warp(torch.rand(1, 3, h, w, dtype=torch.float64), depth, T_tgt_src, K, upsample=2)
    assert bool(filled.valid[0, 0, :, 2:].all())


def test_forward_warp_z_buffer_keeps_nearest():
    h, w = 8, 8
    K = _K(1, fx=10.0, fy=10.0, cx=3.5, cy=3.5)
    depth = torch.full((1, 1, h, w), 10.0, dtype=torch.float64)
    depth[0, 0, 4, 2] = 5.0  # a near point
    img = torch.zeros(1, 1, h, w, dtype=torch.float64)
    img[0, 0, 4, 2] = 1.0
    T = torch.eye(4, dtype=torch.float64)[None].clone()
    T[0, 0, 3] = 1.0  # near point moves 2 px, far points 1 px: near lands on (4, 4) over a far one
    res = ops.forward_warp(img, depth, T, K, upsample=1)
    assert res.image[0, 0, 4, 4] == 1.0 and res.depth[0, 0, 4, 4] == 5.0


# ---------------------------------------------------------------- kornia as an independent oracle
def test_backproject_matches_kornia():
    kornia = pytest.importorskip("kornia")
    K = _K(1, dtype=torch.float32)
    depth = torch.rand(1, 1, 24, 64) * 10 + 1
    ours = ops.backproject(depth, K)
    theirs = kornia.geometry.depth.depth_to_3d_v2(depth[:, 0], K)  # (B, H, W, 3)
    assert torch.allclose(ours.permute(0, 2, 3, 1), theirs, atol=1e-4)


def test_rotation_matches_kornia():
    kornia = pytest.importorskip("kornia")
    w = torch.randn(5, 3, dtype=torch.float64)
    ours = ops.pose_vec_to_matrix(torch.cat([torch.zeros(5, 3, dtype=torch.float64), w], 1))[:, :3, :3]
    assert torch.allclose(ours, kornia.geometry.conversions.axis_angle_to_rotation_matrix(w), atol=1e-9)


def test_inverse_warp_matches_kornia_warp_frame_depth():
    kornia = pytest.importorskip("kornia")
    h, w = 24, 64
    img = _textured(2, h, w, torch.float64)
    depth = 5.0 + torch.rand(2, 1, h, w, dtype=torch.float64)
    T_src_tgt = ops.pose_vec_to_matrix(torch.tensor([[0.1, 0.0, 0.2, 0.0, 0.02, 0.0],
                                                     [-0.1, 0.05, 0.3, 0.01, -0.01, 0.0]], dtype=torch.float64))
    K = _K(2)
    ours = ops.inverse_warp(img, depth, T_src_tgt, K)
    theirs = kornia.geometry.depth.warp_frame_depth(img, depth, T_src_tgt, K)
    inner = ours.valid.bool().expand_as(img).clone()
    inner[..., :2, :] = False
    inner[..., -2:, :] = False
    inner[..., :, :2] = False
    inner[..., :, -2:] = False
    assert inner.sum() > 0.5 * inner.numel()
    assert torch.allclose(ours.image[inner], theirs[inner], atol=1e-6)


# ---------------------------------------------------------------- gradients
def test_gradcheck_pose_vec_to_matrix():
    vec = (torch.randn(2, 6, dtype=torch.float64) * 0.3).requires_grad_()
    assert torch.autograd.gradcheck(ops.pose_vec_to_matrix, (vec,))
    tiny = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.pose_vec_to_matrix, (tiny,))


def test_gradcheck_inverse_warp_depth_and_pose():
    h, w = 6, 8
    img = _textured(1, h, w, torch.float64)
    K = _K(1, fx=8.0, fy=8.0, cx=3.5, cy=2.5)
    depth = (4.0 + torch.rand(1, 1, h, w, dtype=torch.float64)).requires_grad_()
    vec = torch.tensor([[0.05, 0.02, 0.1, 0.01, 0.02, 0.0]], dtype=torch.float64, requires_grad=True)

    def fn(d, v):
        return ops.inverse_warp(img, d, ops.pose_vec_to_matrix(v), K, padding_mode="border").image

    assert torch.autograd.gradcheck(fn, (depth, vec), atol=1e-5)


def test_gradcheck_forward_warp_values_and_backproject():
    h, w = 6, 8
    K = _K(1, fx=8.0, fy=8.0, cx=3.5, cy=2.5)
    T = ops.pose_vec_to_matrix(torch.tensor([[0.1, 0.0, 0.05, 0.0, 0.01, 0.0]], dtype=torch.float64))
    depth = torch.full((1, 1, h, w), 5.0, dtype=torch.float64)
    img = torch.rand(1, 2, h, w, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ops.forward_warp(x, depth, T, K, upsample=2).image, (img,))
    d = (1 + torch.rand(1, 1, 3, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: ops.backproject(x, K), (d,))


def test_normals_of_planes():
    K = _K(1)
    flat = ops.depth_to_normals(torch.full((1, 1, 24, 64), 5.0, dtype=torch.float64), K)
    assert torch.allclose(flat[0, :, 5:-5, 5:-5], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)[:, None, None]
                          .expand(3, 14, 54), atol=1e-9)
    # The ground plane y = 1.5 (y down) seen by a level camera has normal (0, -1, 0) (pointing up, to the camera).
    v = torch.arange(24, dtype=torch.float64)[:, None].expand(24, 64)
    ground_depth = (1.5 * 55.0 / (v - 11.5 + 0.0)).clamp(min=0)
    n = ops.depth_to_normals(ground_depth[None, None], K)
    assert torch.allclose(n[0, :, 15:-2, 3:-3], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)[:, None, None]
                          .expand(3, 7, 58), atol=1e-6)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="depth_m must be 4-D with 1 channels"):
        ops.backproject(torch.ones(1, 2, 3, 3), _K(1))
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        ops.pose_vec_to_matrix(torch.zeros(2, 7))


@pytest.mark.parametrize("module_name", ["depth_sfm_ros.geometry.camera", "depth_sfm_ros.geometry.pose",
                                         "depth_sfm_ros.geometry.ops", "depth_sfm_ros.runtime.visualize"])
def test_docstring_examples(module_name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module_name), extraglobs={"np": np, "torch": torch})
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- mixed precision
def _kitti_scene(h: int = 192, w: int = 640) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A street-like depth map (ground plane + a wall), a KITTI camera at 640x192 and a forward motion."""
    K = torch.tensor([[[0.58 * w, 0.0, 0.5 * w - 0.5], [0.0, 1.92 * h, 0.5 * h - 0.5], [0.0, 0.0, 1.0]]])
    v = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    u = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    ground = 1.65 * K[0, 1, 1] / (v - K[0, 1, 2]).clamp(min=0.5)
    depth = torch.minimum(ground, 30.0 + 25.0 * torch.sin(u / 97.0) ** 2).clamp(max=80.0).view(1, 1, h, w)
    T = ops.pose_vec_to_matrix(torch.tensor([[0.05, -0.02, 1.2, 0.004, 0.02, -0.003]]))
    return _textured(1, h, w, torch.float32), depth, T, K


def test_forward_warp_splats_on_the_fp32_pixels_under_bf16_autocast():
    """Under autocast the matmuls of back-projection / projection would run in bf16: points land tenths of a
    pixel off at KITTI width and the rounding puts splats on other pixels. The geometry leaves autocast."""
    image, depth, T, K = _kitti_scene()
    reference = ops.forward_warp(image, depth, T, K, upsample=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        points = ops.backproject(depth, K)
        uv, z = ops.project(ops.transform_points(T, points), K)
        mixed = ops.forward_warp(image, depth, T, K, upsample=2)
        matrix = ops.pose_vec_to_matrix(torch.tensor([[0.05, -0.02, 1.2, 0.004, 0.02, -0.003]]))
    assert torch.equal(mixed.valid, reference.valid)  # the same pixels were hit...
    torch.testing.assert_close(mixed.depth, reference.depth, rtol=0, atol=0)  # ...by the same points
    torch.testing.assert_close(mixed.image, reference.image, rtol=0, atol=0)
    assert points.dtype == uv.dtype == z.dtype == matrix.dtype == mixed.image.dtype == torch.float32
    torch.testing.assert_close(matrix, T, rtol=0, atol=0)
    # the inputs may already be bf16 (network outputs): cast to float32, the result is still float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = ops.forward_warp(image.bfloat16(), depth, T, K, upsample=2)
    assert half.image.dtype == torch.float32 and torch.equal(half.valid, reference.valid)
    # outside autocast nothing changes: float64 in, float64 out
    assert ops.backproject(depth.double(), K.double()).dtype == torch.float64


def test_training_forward_instance_path_is_float32_under_autocast():
    """TrainingForward's instance-aware path (pose matrices, forward projection to the intermediate frame):
    the same splats with and without bf16 autocast when the networks give the same outputs."""
    from depth_sfm_training.forward import TrainingForward

    image, depth, _, K = _kitti_scene(96, 320)
    disparity = (1.0 / depth - 1.0 / 100.0) / (1.0 / 0.1 - 1.0 / 100.0)

    class Fixed(torch.nn.Module):
        def __init__(self, value: torch.Tensor) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.register_buffer("value", value)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            batch = inputs[0].shape[0]
            return (self.value * self.scale).expand(batch, *self.value.shape[1:])

    bundle = torch.nn.Module()
    bundle.depth = Fixed(disparity)
    bundle.pose = Fixed(torch.tensor([[0.05, -0.02, 1.2, 0.004, 0.02, -0.003]]))
    bundle.obj_pose = Fixed(torch.zeros(1, 1, 6))
    bundle.motion = None
    forward = TrainingForward(bundle, 0.1, 100.0, need_source_depth=True, instance=True)
    images = torch.stack([image, image], 1)
    ids = torch.zeros(1, 2, 1, 96, 320, dtype=torch.long)
    ids[..., 40:70, 100:180] = 1
    reference = forward(images, K, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = forward(images, K, ids)
    torch.testing.assert_close(mixed.intermediate[0], reference.intermediate[0], rtol=0, atol=0)  # the splats
    torch.testing.assert_close(mixed.T_src_tgt[0], reference.T_src_tgt[0], rtol=0, atol=0)
    assert mixed.depths[0].dtype == mixed.T_src_tgt[0].dtype == mixed.intermediate[0].dtype == torch.float32
