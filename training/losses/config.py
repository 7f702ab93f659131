"""LossConfig: every loss technique's switch and default weight (from its paper), no torch needed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["LossConfig", "TERM_WEIGHTS"]

AUTO_WEIGHT_MODES = ("none", "less_dynamic_more_weight", "more_dynamic_more_weight")
SPARSITY_KINDS = ("l1", "l1_2")

# term name in compute_losses' output -> (LossConfig weight field, switch field or None = always on)
TERM_WEIGHTS: dict[str, tuple[str, str | None]] = {
    "photometric": ("photometric_weight", None),
    "smoothness": ("smoothness_weight", None),
    "explainability": ("explainability_weight", "explainability"),
    "geometric": ("geometric_weight", "geometric"),
    "boundary": ("boundary_weight", "boundary"),
    "cycle": ("cycle_weight", "cycle"),
    "normal": ("normal_weight", "normal"),
    "ranking": ("ranking_weight", "ranking"),
    "flow_sparsity": ("flow_sparsity_weight", "flow3d"),
    "dynamic_prob": ("dynamic_prob_weight", "flow3d"),
}


@dataclass
class LossConfig:
    """Switches and weights of the self-supervised losses. Defaults are the papers' values.

    Photometric (monodepth2): ``ssim_weight`` 0.85, per-pixel minimum over sources, identity
    auto-masking, multi-scale at full resolution; ``valid_mask`` drops pixels whose warp leaves the
    source. Smoothness 1e-3 (monodepth2; divided by 2^scale).
    SfMLearner explainability (seed 002/004): weight 0.2 on its regulariser.
    Overlap / blank masks (seed 003): binary masks on the photometric loss. The overlap mask is the
    z-buffer occlusion test of target points that land on the same source pixel (a point more than
    ``overlap_rel_tolerance`` behind the nearest one there is occluded); the warp's in-view mask (the
    seed's edge mask) is ``valid_mask``.
    SC-Depth geometric consistency: weight 0.5, and ``geometric_mask`` multiplies 1 - inconsistency
    into the photometric error.
    Object-boundary loss (seed 002): gradient ``boundary_order`` 1 or 2; weight 0.01, NOT the seed's
    2.5, which belongs to its own loss scale (summed, raw disparity) and collapses the depth under our
    per-pixel means of mean-normalised disparity (see losses/boundary.py and object_boundary.yaml).
    Instance-wise warping and losses (seed 001): per-object composite motion, region-averaged
    photometric and geometric losses; ``forward_upsample`` = alpha = 2. With ``flow3d`` too, the
    residual 3-D flow moves the background (non-instance) pixels and the object motions the instances.
    Pose cycle consistency (seed 000 eq. 1): the weight is not in the paper; 0.1 is our choice.
    Auto-weight (seed 000 eq. 2): ``auto_weight`` mode; the paper's winner is "less_dynamic_more_weight".
    Its masks must come from the dataset or from a motion net that a loss trains (``flow3d``).
    Normal L1 (eq. 4) and edge-aware relative normal (eq. 5): 0.1 each (seed 000).
    3-D flow net terms (seed 000 sec. 3.3): weights not in the paper; 0.1 / 0.1 are our choice. Without
    dataset masks the dynamic-probability target is ``|F| > dynamic_flow_rel_threshold * depth``: the
    flow relative to the point's depth, both in network depth units, so it does not depend on the
    (monocular, unknown) scale. 0.03 (our choice): a sub-pixel flow that the photometric loss cannot tell from
    zero stays below it (``test_label_free_mask``: 0.01 let 1-2 % of a static background through); an object
    moving 3 % of its distance between the two frames (a car at 10 m and 3 m/s at 10 Hz) passes it.
    """

    ssim_weight: float = 0.85
    photometric_weight: float = 1.0
    min_reprojection: bool = True
    automask: bool = True
    valid_mask: bool = True
    smoothness_weight: float = 1e-3

    explainability: bool = False
    explainability_weight: float = 0.2

    overlap_mask: bool = False
    overlap_rel_tolerance: float = 0.1
    blank_mask: bool = False

    geometric: bool = False
    geometric_weight: float = 0.5
    geometric_mask: bool = True

    boundary: bool = False
    boundary_weight: float = 0.01
    boundary_order: int = 1

    instance: bool = False
    forward_upsample: int = 2

    cycle: bool = False
    cycle_weight: float = 0.1

    auto_weight: str = "none"

    normal: bool = False
    normal_weight: float = 0.1
    ranking: bool = False
    ranking_weight: float = 0.1
    ranking_pairs: int = 1024

    flow3d: bool = False
    flow_sparsity_weight: float = 0.1
    flow_sparsity: str = "l1_2"
    dynamic_prob_weight: float = 0.1
    dynamic_flow_rel_threshold: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must be in [0, 1], got {self.ssim_weight}")
        for field in dataclasses.fields(self):
            if field.name.endswith("_weight") and field.name not in ("ssim_weight", "auto_weight"):
                value = getattr(self, field.name)
                if not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"{field.name} must be a number >= 0, got {value!r}")
        if self.auto_weight not in AUTO_WEIGHT_MODES:
            raise ValueError(f"auto_weight must be one of {AUTO_WEIGHT_MODES}, got {self.auto_weight!r}")
        if self.flow_sparsity not in SPARSITY_KINDS:
            raise ValueError(f"flow_sparsity must be one of {SPARSITY_KINDS}, got {self.flow_sparsity!r}")
        if self.boundary_order not in (1, 2):
            raise ValueError(f"boundary_order must be 1 or 2, got {self.boundary_order}")
        if self.forward_upsample < 1 or self.ranking_pairs < 1:
            raise ValueError("forward_upsample and ranking_pairs must be >= 1")
        if self.dynamic_flow_rel_threshold <= 0:
            raise ValueError(f"dynamic_flow_rel_threshold must be > 0, got {self.dynamic_flow_rel_threshold}")
        if self.overlap_rel_tolerance < 0:
            raise ValueError(f"overlap_rel_tolerance must be >= 0, got {self.overlap_rel_tolerance}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "LossConfig":
        """Build from a mapping (e.g. the ``losses:`` section of a YAML config); unknown keys are an error."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown loss config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def active_weights(self) -> dict[str, float]:
        """Weights of the terms that are switched on, by term name (see ``TERM_WEIGHTS``)."""
        out = {}
        for term, (weight_field, switch) in TERM_WEIGHTS.items():
            if switch is None or getattr(self, switch):
                out[term] = float(getattr(self, weight_field))
        return out
