"""Tests of the self-supervised losses (training/losses) on analytically constructed scenes."""
from __future__ import annotations

import math

import pytest
import torch

from depth_sfm_ros.geometry.ops import invert_transform, inverse_warp, pose_vec_to_matrix
from depth_sfm_training.losses import FrameBatchOutputs, LossConfig, compute_losses
from depth_sfm_training.losses.auto_weight import dynamic_sample_weights
from depth_sfm_training.losses.boundary import boundary_loss, object_boundaries
from depth_sfm_training.losses.cycle import pose_cycle_loss
from depth_sfm_training.losses.explainability import explainability_masks, explainability_regularizer
from depth_sfm_training.losses.flow3d import dynamic_prob_loss, flow_sparsity_loss, flow_warp
from depth_sfm_training.losses.geometric import depth_inconsistency, geometric_consistency_loss
from depth_sfm_training.losses.instance import composite_motions, instance_warp, intermediate_frame
from depth_sfm_training.losses.normals import edge_guided_pairs, normal_l1_loss, relative_normal_loss
from depth_sfm_training.losses.occlusion_masks import blank_mask, overlap_mask
from depth_sfm_training.losses.photometric import (photometric_error, reduce_masked, reprojection_loss, ssim,
                                                   upsample_depth)
from depth_sfm_training.losses.smoothness import smoothness_loss

H, W, FOCAL, DEPTH = 16, 24, 20.0, 5.0


def intrinsics(b: int = 1, h: int = H, w: int = W) -> torch.Tensor:
    K = torch.tensor([[FOCAL, 0.0, (w - 1) / 2.0], [0.0, FOCAL, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    return K.expand(b, 3, 3).clone()


def translation(tx: float, ty: float = 0.0, tz: float = 0.0, b: int = 1) -> torch.Tensor:
    return pose_vec_to_matrix(torch.tensor([[tx, ty, tz, 0.0, 0.0, 0.0]]).expand(b, 6).contiguous())


def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RGB (3, ...) texture painted on the plane, a function of the plane's metric x, y."""
    return torch.stack([0.5 + 0.3 * torch.sin(2.3 * x + 1.1 * y),
                        0.5 + 0.3 * torch.cos(1.7 * x - 2.9 * y),
                        0.5 + 0.2 * torch.sin(3.1 * x) * torch.cos(2.3 * y)])


def render_plane(offset_x_m: float, b: int = 1) -> torch.Tensor:
    """Image (B, 3, H, W) of the fronto-parallel textured plane at DEPTH seen by a camera whose
    points are the target's plus (offset_x_m, 0, 0) (i.e. T_cam_tgt = translation(offset_x_m))."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    x = (u - (W - 1) / 2.0) / FOCAL * DEPTH - offset_x_m
    y = (v - (H - 1) / 2.0) / FOCAL * DEPTH
    return texture(x, y).unsqueeze(0).expand(b, 3, H, W).contiguous()


SHIFT_M = 2.0 * DEPTH / FOCAL  # a 2-pixel shift at DEPTH


def two_source_batch(b: int = 2, depth_scale: float = 1.0, **extra) -> FrameBatchOutputs:
    """Target plus two sources translated by +-2 px; ground-truth depth (times depth_scale) and poses."""
    depth = torch.full((b, 1, H, W), DEPTH * depth_scale)
    poses = [translation(SHIFT_M, b=b), translation(-SHIFT_M, b=b)]
    return FrameBatchOutputs(
        target_image=render_plane(0.0, b), source_images=[render_plane(SHIFT_M, b), render_plane(-SHIFT_M, b)],
        K=intrinsics(b), depths=[depth, depth[..., ::2, ::2].contiguous()], T_src_tgt=poses, **extra)


# --- photometric ------------------------------------------------------------------------------

def test_ssim_of_identical_images_is_one_and_error_zero():
    img = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(img, img), torch.ones_like(img), atol=1e-5)
    assert photometric_error(img, img).abs().max() < 1e-6
    assert photometric_error(img, 1.0 - img).mean() > 0.1
    with pytest.raises(ValueError, match="ssim_weight"):
        photometric_error(img, img, ssim_weight=1.5)


def test_perfect_warp_of_plane_scene_gives_zero_photometric_loss():
    batch = two_source_batch()
    total, terms = compute_losses(batch, LossConfig())
    assert terms["photometric"] < 1e-5, terms
    wrong = two_source_batch(depth_scale=0.5)
    _, wrong_terms = compute_losses(wrong, LossConfig())
    assert wrong_terms["photometric"] > 100 * terms["photometric"] + 1e-3
    # SC-Depth geometric term: ~0 with consistent source depths, positive with inconsistent ones
    batch.source_depths = [torch.full((2, 1, H, W), DEPTH)] * 2
    _, geo = compute_losses(batch, LossConfig(geometric=True, overlap_mask=True, blank_mask=True))
    assert geo["geometric"] < 1e-5 and geo["photometric"] < 1e-5
    batch.source_depths = [torch.full((2, 1, H, W), 2 * DEPTH)] * 2
    _, geo_bad = compute_losses(batch, LossConfig(geometric=True))
    assert geo_bad["geometric"].item() == pytest.approx(1.0 / 3.0, rel=1e-4)
    # without the minimum over sources, the border pixels that left one source show up
    _, mean_terms = compute_losses(two_source_batch(), LossConfig(min_reprojection=False, valid_mask=False))
    assert mean_terms["photometric"] > terms["photometric"]


def test_reprojection_minimum_validity_and_automask():
    target = torch.zeros(1, 3, 4, 4)
    good, bad = target.clone(), torch.ones(1, 3, 4, 4)
    ones = torch.ones(1, 1, 4, 4)
    res = reprojection_loss(target, [bad, good], ssim_weight=0.0)
    assert res.loss.item() == pytest.approx(0.0)
    res = reprojection_loss(target, [bad, good], valid=[ones, torch.zeros_like(ones)], ssim_weight=0.0)
    assert res.loss.item() == pytest.approx(1.0)
    # auto-masking: the source is identical to the target (static camera) -> every pixel dropped
    res = reprojection_loss(target, [bad], sources=[target], ssim_weight=0.0)
    assert res.mask.sum() == 0 and res.loss.item() == 0.0
    with pytest.raises(ValueError, match="entries"):
        reprojection_loss(target, [good], valid=[ones, ones])


def test_reduce_masked_region_average_counts_each_region_equally():
    error = torch.tensor([[[[1.0, 1.0, 1.0, 3.0]]]])
    mask = torch.ones_like(error)
    regions = torch.tensor([[[[0, 0, 0, 1]]]])
    assert reduce_masked(error, mask).item() == pytest.approx(1.5)
    assert reduce_masked(error, mask, regions).item() == pytest.approx(2.0)


def test_upsample_depth_interpolates_inverse_depth():
    depth = torch.tensor([[[[1.0, 2.0]]]])
    up = upsample_depth(depth, (1, 4))
    assert torch.allclose(1.0 / up, torch.nn.functional.interpolate(1.0 / depth, size=(1, 4), mode="bilinear",
                                                                     align_corners=False))


# --- smoothness, explainability, cycle, auto-weight ---------------------------------------------

def test_smoothness_zero_for_constant_disparity():
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert smoothness_loss(torch.full((2, 1, 4, 4), 0.3), img).item() == pytest.approx(0.0, abs=1e-7)
    ramp = torch.linspace(0.1, 1.0, 8).expand(2, 1, 8, 8)
    assert smoothness_loss(ramp, img).item() > 0.0
    # mean normalisation: scaling the disparity does not change the loss
    assert smoothness_loss(3 * ramp, img).item() == pytest.approx(smoothness_loss(ramp, img).item(), rel=1e-5)


def test_explainability_regulariser_minimal_at_mask_one():
    values = [explainability_regularizer(torch.full((1, 2, 4, 4), logit)).item() for logit in (-3.0, 0.0, 3.0, 20.0)]
    assert values == sorted(values, reverse=True)
    assert values[1] == pytest.approx(math.log(2.0), rel=1e-5)
    assert values[-1] < 1e-6
    masks = explainability_masks(torch.zeros(1, 2, 4, 4), (8, 8))
    assert len(masks) == 2 and masks[0].shape == (1, 1, 8, 8)
    assert torch.allclose(masks[0], torch.full_like(masks[0], 0.5))


def test_cycle_loss_zero_for_inverse_positive_otherwise():
    vec = torch.tensor([[0.3, -0.1, 1.2, 0.05, -0.2, 0.1]], requires_grad=True)
    T = pose_vec_to_matrix(vec)
    assert pose_cycle_loss(T, invert_transform(T)).item() < 1e-5
    other = pose_vec_to_matrix(torch.tensor([[0.1, 0.0, -1.0, 0.0, 0.1, 0.0]]))
    loss = pose_cycle_loss(T, other)
    assert loss.item() > 0.1
    loss.backward()
    assert torch.isfinite(vec.grad).all() and vec.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="4, 4"):
        pose_cycle_loss(torch.eye(3).unsqueeze(0), torch.eye(3).unsqueeze(0))


def test_auto_weight_matches_equation_2():
    mask = torch.zeros(2, 1, 4, 5, dtype=torch.bool)
    mask[0, 0, 1, 1:4] = True  # 3 of 20 pixels dynamic
    assert dynamic_sample_weights(mask).tolist() == pytest.approx([1 - 3 / 20, 1.0])
    assert dynamic_sample_weights(mask, "more_dynamic_more_weight").tolist() == pytest.approx([1 + 3 / 20, 1.0])
    assert dynamic_sample_weights(mask.float(), "none").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="mode"):
        dynamic_sample_weights(mask, "bigger")


def test_auto_weight_scales_the_per_sample_reprojection_loss():
    target = torch.zeros(2, 3, 4, 5)
    warped = torch.ones(2, 3, 4, 5) * torch.tensor([0.2, 0.4]).reshape(2, 1, 1, 1)
    weights = torch.tensor([0.5, 1.0])
    res = reprojection_loss(target, [warped], ssim_weight=0.0, sample_weight=weights)
    assert res.loss.item() == pytest.approx((0.5 * 0.2 + 1.0 * 0.4) / 2)


# --- forward warp / instance pipeline (seed 001) ----------------------------------------------

def test_forward_projection_lands_where_projection_says():
    image = torch.arange(H * W, dtype=torch.float32).reshape(1, 1, H, W)
    depth = torch.full((1, 1, H, W), DEPTH)
    T_tgt_src = translation(SHIFT_M, tz=-1.0)  # points move +0.5 m in x and 1 m closer (no collisions)
    out = intermediate_frame(image, depth, T_tgt_src, intrinsics(), upsample=1)
    # by hand: source pixel (u, v) -> x = (u - cx) * 5 / 20 + 0.5, z = 4 -> u' = cx + 20 x / 4
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    for u, v in [(3, 4), (11, 8), (17, 2)]:
        x = (u - cx) * DEPTH / FOCAL + SHIFT_M
        y = (v - cy) * DEPTH / FOCAL
        u2, v2 = round(cx + FOCAL * x / 4.0), round(cy + FOCAL * y / 4.0)
        assert out.valid[0, 0, v2, u2] == 1.0
        assert out.image[0, 0, v2, u2].item() == pytest.approx(float(v * W + u)), (u, v, u2, v2)
    # magnification 5/4 leaves holes between the splatted pixels
    assert 0 < out.valid.sum() < H * W


def test_intermediate_frame_carries_instance_ids_and_holes():
    ids = torch.zeros(1, 1, H, W, dtype=torch.long)
    ids[..., 5:9, 6:10] = 1
    depth = torch.full((1, 1, H, W), DEPTH)
    out = intermediate_frame(torch.rand(1, 3, H, W), depth, translation(SHIFT_M), intrinsics(), ids)
    assert out.instance_ids[0, 0, 5:9, 8:12].eq(1).all() and out.instance_ids.eq(1).sum() == 16
    assert out.valid[0, 0, :, :2].sum() == 0  # nothing lands on the 2 left columns


def object_scene():
    """Static camera; an object (instance 1, columns 10..15) moved +2 px between source and target."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    background = texture(u * 0.4, v * 0.4)
    obj = texture(u * 0.9 + 7.0, v * 0.9 - 3.0)
    target, source = background.clone(), background.clone()
    target[:, :, 10:16] = obj[:, :, 10:16]
    source[:, :, 8:14] = obj[:, :, 10:16]
    ids = torch.zeros(1, 1, H, W, dtype=torch.long)
    ids[..., 10:16] = 1
    return target.unsqueeze(0), source.unsqueeze(0), ids


def test_instance_warp_with_object_motion_reconstructs_the_object():
    target, source, ids = object_scene()
    depth, K, ego = torch.full((1, 1, H, W), DEPTH), intrinsics(), translation(0.0)
    moving = translation(SHIFT_M).unsqueeze(1)  # M_1: +0.5 m in x
    good = instance_warp(source, depth, ego, K, ids, moving, depth_src_m=depth)
    static = instance_warp(source, depth, ego, K, ids, translation(0.0).unsqueeze(1))
    obj = ids.bool().expand_as(target)
    assert (good.image - target).abs()[obj].max() < 1e-5
    assert (static.image - target).abs()[obj].mean() > 0.05
    loss_good = reprojection_loss(target, [good.image], [good.valid], regions=ids).loss
    loss_static = reprojection_loss(target, [static.image], [static.valid], regions=ids).loss
    assert loss_good.item() < 0.2 * loss_static.item()
    assert torch.allclose(good.depth_src_sampled, depth)
    assert torch.allclose(composite_motions(ego, moving)[:, 0], translation(-SHIFT_M), atol=1e-6)
    with pytest.raises(ValueError, match="instance ids"):
        instance_warp(source, depth, ego, K, ids * 2, moving)


# --- occlusion masks (seed 003), geometric consistency (SC-Depth) -------------------------------

def test_overlap_and_blank_masks_for_lateral_translation():
    depth, K = torch.full((1, 1, H, W), DEPTH), intrinsics()
    T_src_tgt = translation(SHIFT_M)  # target pixel u is seen at u + 2 in the source
    overlap = overlap_mask(depth, T_src_tgt, K, depth_src_m=depth)
    blank = blank_mask(depth, invert_transform(T_src_tgt), K)
    expected = torch.ones(1, 1, H, W)
    expected[..., W - 2:] = 0.0
    assert torch.equal(overlap, expected)
    assert torch.equal(blank, expected)
    assert torch.equal(overlap_mask(depth, invert_transform(T_src_tgt), K).flip(-1), expected)


def test_geometric_inconsistency_zero_for_consistent_depth_and_positive_otherwise():
    K = intrinsics()
    depth_tgt = torch.full((1, 1, H, W), DEPTH)
    T_src_tgt = translation(0.3, tz=-1.0)
    consistent = depth_inconsistency(depth_tgt, torch.full((1, 1, H, W), DEPTH - 1.0), T_src_tgt, K)
    assert geometric_consistency_loss(consistent).item() < 1e-5
    assert consistent.weight_mask[consistent.valid > 0].min() > 0.9999
    scaled = depth_inconsistency(depth_tgt, torch.full((1, 1, H, W), 2 * (DEPTH - 1.0)), T_src_tgt, K)
    assert geometric_consistency_loss(scaled).item() == pytest.approx(1.0 / 3.0, rel=1e-4)


# --- normals (seed 000 eq. 4, 5), boundary (seed 002), flow (seed 000 sec. 3.3) -----------------

def tilted_plane(slope: float, fold_u: int | None = None) -> torch.Tensor:
    """Depth (1, 1, H, W) of the plane z = 5 + slope * x (optionally only right of column fold_u)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ray_x = (u - (W - 1) / 2.0) / FOCAL
    depth = DEPTH / (1.0 - slope * ray_x)
    if fold_u is not None:
        depth = torch.where(u >= fold_u, depth, torch.full_like(depth, DEPTH / (1.0 - slope * ray_x[0, fold_u])))
    return depth.reshape(1, 1, H, W)


def test_normal_loss_zero_for_identical_depth_positive_for_tilted_plane():
    K, flat = intrinsics(), torch.full((1, 1, H, W), DEPTH)
    assert normal_l1_loss(flat, flat, K).item() < 1e-6
    tilted = tilted_plane(0.5).requires_grad_(True)
    loss = normal_l1_loss(tilted, flat, K)
    assert loss.item() > 0.3
    loss.backward()
    assert torch.isfinite(tilted.grad).all()


def test_relative_normal_loss_with_edge_guided_pairs():
    K, flat = intrinsics(), torch.full((1, 1, H, W), DEPTH)
    folded = tilted_plane(0.8, fold_u=12)
    guide = torch.zeros(1, 3, H, W)
    guide[..., 12:] = 1.0  # image edge at the fold
    pairs = edge_guided_pairs(guide, 64, torch.Generator().manual_seed(3))
    again = edge_guided_pairs(guide, 64, torch.Generator().manual_seed(3))
    assert torch.equal(pairs.index_a, again.index_a) and torch.equal(pairs.index_b, again.index_b)
    u_a, u_b = pairs.index_a % W, pairs.index_b % W
    assert (u_a < 12).all() and (u_b >= 12).all()  # pairs straddle the edge
    assert relative_normal_loss(folded, folded, K, pairs).item() < 1e-6
    assert relative_normal_loss(folded, flat, K, pairs).item() > 0.05


def test_boundary_loss_lower_when_disparity_edges_align_with_mask():
    ids = torch.zeros(1, 1, H, W, dtype=torch.long)
    ids[..., 4:12, 8:16] = 1
    g1 = object_boundaries(ids)
    assert g1[0, 0, 8, 0] == 0.0 and g1[0, 0, 8, 8] == pytest.approx(1.0)
    aligned = torch.full((1, 1, H, W), 0.2)
    aligned[..., 4:12, 8:16] = 0.6
    shifted = torch.full((1, 1, H, W), 0.2)
    shifted[..., 0:3, 18:22] = 0.6
    for order in (1, 2):
        assert boundary_loss(aligned, ids, order).item() < 0.5 * boundary_loss(shifted, ids, order).item()


def test_flow_warp_and_flow_terms():
    image, depth, K = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(4)), torch.full(
        (1, 1, H, W), DEPTH), intrinsics()
    T = translation(0.2, tz=0.3)
    zero = torch.zeros(1, 3, H, W)
    rigid = inverse_warp(image, depth, T, K, padding_mode="border")
    assert torch.allclose(flow_warp(image, depth, T, K, zero).image, rigid.image, atol=1e-6)
    # a residual flow equal to a translation equals the composed rigid motion
    flow = torch.zeros(1, 3, H, W)
    flow[:, 0] = 0.4
    composed = inverse_warp(image, depth, translation(0.4) @ T, K, padding_mode="border")
    assert torch.allclose(flow_warp(image, depth, T, K, flow).image, composed.image, atol=1e-5)
    for kind in ("l1", "l1_2"):
        assert flow_sparsity_loss(zero, kind).item() < 1e-6
        assert flow_sparsity_loss(flow, kind).item() > 0.1
    sparse = torch.zeros(1, 3, H, W)
    sparse[:, 0, :2, :2] = 0.4 * H * W / 4  # same total |F| as `flow`, concentrated in 4 pixels
    assert flow_sparsity_loss(sparse, "l1_2") < flow_sparsity_loss(flow, "l1_2")
    teacher = torch.zeros(1, 1, H, W)
    teacher[..., :4, :4] = 1
    good_prob = teacher * 0.98 + 0.01
    assert dynamic_prob_loss(good_prob, teacher) < dynamic_prob_loss(1 - good_prob, teacher)
    assert dynamic_prob_loss(good_prob, None, sparse).item() < dynamic_prob_loss(1 - good_prob, None, sparse).item()
    with pytest.raises(ValueError, match="teacher"):
        dynamic_prob_loss(good_prob)


# --- config and composition ---------------------------------------------------------------------

def test_loss_config_defaults_and_validation():
    cfg = LossConfig()
    assert (cfg.ssim_weight, cfg.smoothness_weight, cfg.explainability_weight) == (0.85, 1e-3, 0.2)
    assert (cfg.normal_weight, cfg.ranking_weight, cfg.geometric_weight, cfg.boundary_weight) == (0.1, 0.1, 0.5, 2.5)
    assert set(cfg.active_weights()) == {"photometric", "smoothness"}
    assert LossConfig.from_dict({"cycle": True}).active_weights()["cycle"] == 0.1
    with pytest.raises(ValueError, match="unknown loss config"):
        LossConfig.from_dict({"smothness_weight": 1.0})
    with pytest.raises(ValueError, match="auto_weight"):
        LossConfig(auto_weight="sometimes")
    with pytest.raises(ValueError, match="geometric_weight"):
        LossConfig(geometric_weight=-1.0)
    with pytest.raises(ValueError, match="source_depths"):
        compute_losses(two_source_batch(), LossConfig(geometric=True))
    with pytest.raises(ValueError, match="K must be"):
        batch = two_source_batch()
        batch.K = intrinsics(1)
        compute_losses(batch)


def test_masks_and_weights_enter_the_composed_photometric_loss():
    batch = two_source_batch(b=2)
    batch.source_images = [1.0 - img for img in batch.source_images]  # unexplainable sources
    _, plain = compute_losses(batch, LossConfig(automask=False))
    batch.explainability_logits = [torch.full((2, 2, H, W), -8.0), torch.full((2, 2, H // 2, W // 2), -8.0)]
    _, explained = compute_losses(batch, LossConfig(automask=False, explainability=True))
    assert explained["photometric"] < 0.01 * plain["photometric"]
    assert explained["explainability"] > 7.0  # ~ -log(sigmoid(-8)) = 8
    batch.dynamic_masks = torch.zeros(2, 1, H, W, dtype=torch.bool)
    batch.dynamic_masks[0, :, : H // 2] = True  # half of sample 0 is dynamic -> weight 0.5
    _, weighted = compute_losses(batch, LossConfig(automask=False, auto_weight="less_dynamic_more_weight"))
    assert weighted["photometric"].item() == pytest.approx(0.75 * plain["photometric"].item(), rel=1e-5)


def test_all_techniques_compose_and_gradients_flow():
    b, gen = 2, torch.Generator().manual_seed(5)
    pose_vecs = torch.tensor([[SHIFT_M, 0.0, 0.0, 0.0, 0.01, 0.0], [-SHIFT_M, 0.0, 0.0, 0.0, -0.01, 0.0]])
    pose_vecs = pose_vecs.unsqueeze(1).expand(2, b, 6).contiguous().requires_grad_(True)
    depth = torch.full((b, 1, H, W), DEPTH).requires_grad_(True)
    depth_half = (torch.full((b, 1, H // 2, W // 2), DEPTH) * 1.1).requires_grad_(True)
    ids = torch.zeros(b, 1, H, W, dtype=torch.long)
    ids[..., 4:10, 8:14] = 1
    flows = [torch.zeros(b, 3, H, W, requires_grad=True),
             (0.01 * torch.randn(b, 3, H, W, generator=gen)).requires_grad_(True)]
    logits = [torch.zeros(b, 2, H, W, requires_grad=True), torch.zeros(b, 2, H // 2, W // 2, requires_grad=True)]
    T_src_tgt = [pose_vec_to_matrix(pose_vecs[s]) for s in range(2)]
    batch = FrameBatchOutputs(
        target_image=render_plane(0.0, b), source_images=[render_plane(SHIFT_M, b), render_plane(-SHIFT_M, b)],
        K=intrinsics(b), depths=[depth, depth_half], T_src_tgt=T_src_tgt,
        T_tgt_src=[invert_transform(T) + 0.01 for T in T_src_tgt], explainability_logits=logits,
        source_depths=[torch.full((b, 1, H, W), DEPTH)] * 2, instance_ids=ids,
        object_motions=[translation(0.1, b=b).unsqueeze(1)] * 2, dynamic_masks=ids.bool(), flow3d=flows,
        dynamic_prob=torch.full((b, 1, H, W), 0.3, requires_grad=True),
        depth_prior=tilted_plane(0.3).expand(b, 1, H, W))
    config = LossConfig(explainability=True, overlap_mask=True, blank_mask=True, geometric=True, boundary=True,
                        instance=True, cycle=True, auto_weight="less_dynamic_more_weight", normal=True, ranking=True,
                        ranking_pairs=32, flow3d=True)
    total, terms = compute_losses(batch, config, generator=torch.Generator().manual_seed(0))
    assert set(terms) == set(config.active_weights())
    assert all(torch.isfinite(v) for v in terms.values())
    expected = sum(config.active_weights()[k] * v for k, v in terms.items())
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    for name, t in [("depth", depth), ("depth_half", depth_half), ("pose", pose_vecs), ("flow", flows[1]),
                    ("logits", logits[0])]:
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name
