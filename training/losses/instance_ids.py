"""Instance-id relabelling shared by the forward pass and the losses.

Datasets hand over raw instance ids: Cityscapes-style ``class * 1000 + k`` (e.g. 26001 for the first
car), segmenter track ids, ... Every consumer that turns ids into one channel per instance
(``F.one_hot`` in the boundary loss, the region average of the instance-wise losses, the splatting
of seed 001's intermediate frame, Obj-PoseNet's slots) must first map them to consecutive labels
1..N, otherwise a single id 26001 allocates 26002 channels of H x W.

:func:`relabel_instances` is that one function:

* ``per_frame=False`` (the forward pass, Obj-PoseNet): one label per distinct id over the whole
  batch, so that label k means the same object slot in every frame of the batch;
* ``per_frame=True`` (losses that only need "which pixels belong together"): labels 1..N_b per
  frame, N = max_b N_b, the fewest channels.

0 (background) stays 0; negative ids count as background.
"""
from __future__ import annotations

import torch

__all__ = ["relabel_instances", "relabel_instances_with_table"]


def _check_ids(instance_ids: torch.Tensor) -> None:
    if not isinstance(instance_ids, torch.Tensor) or instance_ids.dim() < 1:
        got = tuple(instance_ids.shape) if isinstance(instance_ids, torch.Tensor) else type(instance_ids).__name__
        raise ValueError(f"instance_ids must be an integer tensor (B, ...), got {got}")
    if instance_ids.is_floating_point() or instance_ids.is_complex():
        raise ValueError(f"instance_ids must be an integer tensor, got {instance_ids.dtype}")


def _relabel_block(ids: torch.Tensor, max_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel one block (the batch, or one frame) -> (labels like ``ids``, table (N + 1,) label -> raw id)."""
    present, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    is_object = present > 0
    object_ids = present[is_object]
    if max_objects and object_ids.numel() > max_objects:
        order = torch.argsort(counts[is_object], descending=True, stable=True)[:max_objects]
        kept = torch.zeros_like(is_object)
        kept[is_object.nonzero().squeeze(1)[order]] = True
        is_object = kept
    # label of each distinct value: 0 for background / dropped objects, 1..N in increasing raw-id order
    label_of_value = torch.cumsum(is_object.long(), 0) * is_object.long()
    table = torch.cat([present.new_zeros(1), present[is_object]]).long()
    return label_of_value[inverse], table


def relabel_instances_with_table(instance_ids: torch.Tensor, max_objects: int = 0,
                                 per_frame: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`relabel_instances` plus the table back to the raw ids.

    Returns:
        labels: int64 like ``instance_ids`` (B, ...), values in 0..N.
        table: int64 (B, N + 1); ``table[b, k]`` is the raw id of label k in frame b (``table[:, 0] = 0``,
            unused labels of a frame with fewer objects are 0). With ``per_frame=False`` every row is the same.
    """
    _check_ids(instance_ids)
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0 (0 = all), got {max_objects}")
    ids = instance_ids.long()
    b = ids.shape[0]
    if not per_frame:
        labels, table = _relabel_block(ids, max_objects)
        return labels, table.unsqueeze(0).expand(b, -1).contiguous()
    blocks = [_relabel_block(ids[i:i + 1], max_objects) for i in range(b)]
    n = max((t.numel() for _, t in blocks), default=1)
    table = ids.new_zeros(b, n)
    for i, (_, t) in enumerate(blocks):
        table[i, :t.numel()] = t
    return torch.cat([lab for lab, _ in blocks], 0), table


def relabel_instances(instance_ids: torch.Tensor, max_objects: int = 0, per_frame: bool = False) -> torch.Tensor:
    """Instance ids (B, ...) of arbitrary values -> consecutive labels 1..N (0 stays background).

    Args:
        instance_ids: integer tensor, first dimension the batch (e.g. (B, 1, H, W)).
        max_objects: > 0 keeps only that many objects (per block: the batch, or each frame), the
            largest by pixel count; the others become background (0).
        per_frame: relabel each frame on its own (fewest labels) instead of over the whole batch.

    Returns int64 labels with the shape of ``instance_ids``; labels follow the order of the raw ids.

    >>> relabel_instances(torch.tensor([[0, 26001, 26001, 24005]])).tolist()
    [[0, 2, 2, 1]]
    """
    return relabel_instances_with_table(instance_ids, max_objects, per_frame)[0]
