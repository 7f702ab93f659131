"""The label-free dynamic mask (issue 13): the residual 3-D flow that the photometric loss and the sparsity prior
make of a scene with one independently moving object marks that object, and nothing of the static background.

Scene (ray-cast, no renderer): a textured fronto-parallel background plane at Z_BG and a textured rectangle at
Z_OBJ in front of it. Between the target and the source the camera moves TX_CAM in x and the object moves
OBJ_SHIFT_M in y on its own. Depth and ego-motion are the true ones (as after a depth / pose stage that
``train.freeze`` keeps fixed): only a free per-pixel relative flow (what ``MotionNet`` predicts) is optimised
with the project's loss (``compute_losses`` with ``flow3d``), and the mask target is
``dynamic_flow_target`` (``|F| > dynamic_flow_rel_threshold * depth``), the teacher of the mask head.
"""
from __future__ import annotations

import pytest
import torch

from depth_sfm_ros.geometry.ops import pose_vec_to_matrix
from depth_sfm_training.losses import FrameBatchOutputs, LossConfig, compute_losses
from depth_sfm_training.losses.flow3d import dynamic_flow_target

H, W, FOCAL = 32, 48, 40.0
Z_BG, Z_OBJ = 8.0, 4.0
TX_CAM = 0.4                      # camera translation (m): background moves 2 px, the object 4 px
OBJ_SHIFT_M = 0.3                 # the object's own motion in y (m): 3 px at Z_OBJ
OBJ_ROWS, OBJ_COLS = (10, 20), (16, 30)


def _texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([0.5 + 0.3 * torch.sin(3.3 * x + 1.3 * y), 0.5 + 0.3 * torch.cos(2.3 * x - 3.1 * y),
                        0.5 + 0.2 * torch.sin(3.7 * x) * torch.cos(2.9 * y)])


def _render(cam_x_m: float, obj_y_m: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image (1, 3, H, W), depth (1, 1, H, W) and object mask (1, 1, H, W) of a camera at x = cam_x_m (target frame
    metres) with the object moved by obj_y_m in y."""
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    ray_x, ray_y = (u - (W - 1) / 2) / FOCAL, (v - (H - 1) / 2) / FOCAL
    x0, x1 = [(c - 0.5 - (W - 1) / 2) / FOCAL * Z_OBJ for c in OBJ_COLS]
    y0, y1 = [(r - 0.5 - (H - 1) / 2) / FOCAL * Z_OBJ for r in OBJ_ROWS]
    x_obj, y_obj = ray_x * Z_OBJ + cam_x_m, ray_y * Z_OBJ - obj_y_m  # in the object's own frame
    hit = (x_obj >= x0) & (x_obj < x1) & (y_obj >= y0) & (y_obj < y1)
    image = torch.where(hit, _texture(x_obj + 3.0, y_obj - 1.0), _texture(ray_x * Z_BG + cam_x_m, ray_y * Z_BG))
    depth = torch.where(hit, torch.tensor(Z_OBJ, dtype=torch.float64), torch.tensor(Z_BG, dtype=torch.float64))
    return image.float()[None], depth.float()[None, None], hit[None, None]


def _optimise_flow(obj_shift_m: float, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sources (the previous and the next frame: the camera at -TX_CAM / +TX_CAM, the object at -/+ its shift),
    as in training: the per-pixel minimum over them settles occlusions at object borders, where one source sees
    what the other hides, so only the object's own motion needs a residual flow."""
    target, depth, obj_mask = _render(0.0, 0.0)
    sources = [_render(sign * TX_CAM, sign * obj_shift_m)[0] for sign in (-1.0, 1.0)]
    K = torch.tensor([[[FOCAL, 0, (W - 1) / 2], [0, FOCAL, (H - 1) / 2], [0, 0, 1]]])
    T_src_tgt = [pose_vec_to_matrix(torch.tensor([[-sign * TX_CAM, 0, 0, 0, 0, 0]])) for sign in (-1.0, 1.0)]
    motion_rel = torch.zeros(2, 1, 3, H, W, requires_grad=True)  # MotionNet's output per source: fraction of depth
    optimiser = torch.optim.Adam([motion_rel], lr=0.01)
    config = LossConfig(flow3d=True, automask=False, smoothness_weight=0.0)
    for _ in range(steps):
        batch = FrameBatchOutputs(target_image=target, source_images=sources, K=K, depths=[depth],
                                  T_src_tgt=T_src_tgt, flow3d=[motion_rel[0] * depth, motion_rel[1] * depth])
        total, _ = compute_losses(batch, config)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
    flows = (motion_rel.detach() * depth).norm(dim=2)  # (2, 1, H, W): the teacher uses the stronger source's flow
    target_mask = dynamic_flow_target(flows.amax(0, keepdim=True).expand(1, 3, H, W) / 3 ** 0.5, depth,
                                      config.dynamic_flow_rel_threshold)
    return target_mask[0, 0].bool(), obj_mask[0, 0], motion_rel.detach()


def test_label_free_mask_marks_the_moving_object_and_not_the_background():
    mask, obj, _ = _optimise_flow(OBJ_SHIFT_M)
    inner = torch.zeros_like(obj)  # the object's pixels away from its border (the border is also occlusion)
    inner[OBJ_ROWS[0] + 4:OBJ_ROWS[1] - 4, OBJ_COLS[0] + 4:OBJ_COLS[1] - 4] = True
    background = ~obj
    background[OBJ_ROWS[0] - 5:OBJ_ROWS[1] + 5, OBJ_COLS[0] - 6:OBJ_COLS[1] + 6] = False  # occlusion band
    assert mask[inner].float().mean() > 0.8
    assert mask[background].float().mean() < 0.01
    iou = (mask & obj).sum() / (mask | obj).sum()
    assert iou > 0.5, f"IoU {iou:.2f}"


def test_label_free_mask_is_quiet_on_a_static_scene():
    mask, _, motion_rel = _optimise_flow(0.0)
    assert mask.float().mean() < 0.005  # the bound for a static scene is 1 %
    assert motion_rel.norm(dim=2).median() < 0.01  # flow well below the threshold (0.03) on the static scene
