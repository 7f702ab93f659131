"""Self-supervised losses, one small module per technique, composed by :func:`compute_losses`.

Trainer usage::

    from depth_sfm_training.losses import FrameBatchOutputs, LossConfig, compute_losses
    config = LossConfig.from_dict(yaml_cfg.get("losses"))        # switches + paper default weights
    total, terms = compute_losses(FrameBatchOutputs(...), config)  # terms: unweighted scalars
    total.backward()

Modules: photometric (SSIM / L1, min reprojection, auto-mask), smoothness, explainability
(SfMLearner), occlusion_masks (seed 003 overlap / blank), boundary (seed 002), geometric
(SC-Depth), instance (seed 001), cycle / auto_weight / normals / flow3d (seed 000); instance_ids
(relabelling raw instance ids 1..N, shared with the forward pass).
"""
from .config import TERM_WEIGHTS, LossConfig
from .compose import FrameBatchOutputs, compute_losses

__all__ = ["LossConfig", "TERM_WEIGHTS", "FrameBatchOutputs", "compute_losses"]
