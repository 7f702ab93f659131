"""Build the Pipeline from the node's parameters (ROS-free; the benchmark uses it too, so the
bare-Pipeline numbers and the node's come from the same configuration)."""
from __future__ import annotations

from typing import Any

from depth_sfm_ros.ros.params import NodeParams, ParameterError
from depth_sfm_ros.runtime.motion_gate import MotionGateConfig
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig


def pipeline_config(params: NodeParams) -> PipelineConfig:
    """The PipelineConfig the node runs with."""
    return PipelineConfig(
        model=params.model_dir, backend=params.backend, device=params.device, fp16=params.fp16,
        threads=params.threads or None, engine_cache_dir=params.engine_cache_dir or None,
        scale_mode=params.scale_mode, fixed_scale=params.fixed_scale, camera_height_m=params.camera_height_m,
        up_cam=params.up_cam(), ground_max_tilt_deg=params.ground_max_tilt_deg,
        ground_min_inlier_ratio=params.ground_min_inlier_fraction, scale_max_jump=params.scale_max_jump,
        upsample_to_camera=params.upsample_to_camera, min_depth_m=params.min_depth_m,
        max_depth_m=params.max_depth_m, mask_threshold=params.mask_threshold,
        max_stamp_gap_s=params.max_stamp_gap_s,
        motion_gate=MotionGateConfig(enabled=params.still_detection, threshold_px=params.still_threshold_px,
                                     max_translation_m=params.still_max_translation_m,
                                     max_rotation_deg=params.still_max_rotation_deg))


def create_pipeline(params: NodeParams) -> Pipeline:
    """Load the model; a model that cannot be loaded is a :class:`ParameterError` naming
    ``model`` (or ``backend`` when that backend is not usable here)."""
    config = pipeline_config(params)
    try:
        return Pipeline(config)
    except ImportError as exc:
        raise ParameterError("backend", f"backend {params.backend!r} is not usable here: {exc}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        name = "backend" if params.backend != "auto" and "backend" in str(exc).lower() else "model"
        raise ParameterError(name, f"cannot load {params.model_dir} with backend {params.backend!r}: {exc}") from None


def attach_online_adapter(params: NodeParams, pipeline: Pipeline) -> Any:
    """With ``adapt_online``: a started OnlineAdapter fed by ``pipeline`` (its frame observer), else None.
    A backend that cannot take new weights or a model without weights.safetensors is a :class:`ParameterError`
    naming ``adapt_online``; an unusable replay folder one naming ``adapt_replay_dir``."""
    if not params.adapt_online:
        return None
    from depth_sfm_ros.runtime.online_adapter import OnlineAdaptConfig, ReplaySetError, create_online_adapter

    try:
        adapter = create_online_adapter(params.model_dir, pipeline.backend,
                                        OnlineAdaptConfig(buffer_frames=params.adapt_buffer_frames,
                                                          duty_cycle=params.adapt_duty_cycle,
                                                          export_every_s=params.adapt_export_every_s),
                                        save_dir=params.adapt_save_dir or None,
                                        replay_dir=params.adapt_replay_dir or None)
    except ImportError as exc:
        raise ParameterError("adapt_online", f"needs the training code and torch: {exc}") from None
    except ReplaySetError as exc:
        raise ParameterError("adapt_replay_dir", str(exc)) from None
    except ValueError as exc:
        raise ParameterError("adapt_online", str(exc)) from None
    pipeline.frame_sink = adapter.frame_sink
    return adapter.start()
