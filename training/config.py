"""Training configuration: one defaults file, experiment files that override it, command-line overrides.

* ``configs/defaults.yaml`` lists EVERY option with its default; it is also the schema: a key that is
  not in the defaults is rejected with its dotted name (``losses.smoothnes``: unknown key ...).
* An experiment file names its base with ``_base_: defaults.yaml`` (a path relative to the file, or a
  list of them, merged left to right - a later base that itself starts from the defaults resets
  everything it inherits, so chain single bases) and overrides only what it changes; dicts merge
  deeply, every other value (lists included) replaces the base value.
* Command-line overrides ``key.sub=value`` are typed with ``yaml.safe_load(value)`` (``lr=2e-4`` ->
  float, ``frame_offsets=[0,-1,1]`` -> list, ``path=null`` -> None).
* After merging, values are checked against the type of the default (an int is accepted for a float,
  a float written as ``1e-4`` - a string to YAML 1.1 - is converted) and a few ranges are validated.

Only ``yaml.safe_load`` is used: reading a config never executes code.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS_PATH = CONFIG_DIR / "defaults.yaml"
BASE_KEY = "_base_"
_MAX_BASE_DEPTH = 16
FREEZABLE_NETS = ("depth", "pose", "motion", "obj_pose")  # models.ModelBundle.SUBNETS (no torch import here)

# Sections whose name ends in "extra" (``extra``, ``val_extra``) are free-form mappings: keys inside them are
# not checked against the defaults
# (an empty dict in defaults.yaml means "anything goes", e.g. extra dataset options passed through).
_FREE_FORM_SUFFIX = "extra"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return a new dict: ``override`` merged into ``base``; nested dicts merge, other values replace.

    >>> deep_merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": 3}, "b": [2]})
    {'a': {'x': 1, 'y': 3}, 'b': [2]}
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _resolve_file(path: Path, depth: int, chain: tuple[Path, ...]) -> dict[str, Any]:
    """Read ``path`` and everything its ``_base_`` names, merged (base first)."""
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"circular _base_ chain: {' -> '.join(str(p) for p in chain + (path,))}")
    if depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"_base_ chain deeper than {_MAX_BASE_DEPTH} at {path}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = Path(base) if os.path.isabs(base) else path.parent / base
        merged = deep_merge(merged, _resolve_file(base_path, depth + 1, chain + (path,)))
    return deep_merge(merged, data)


def load_defaults() -> dict[str, Any]:
    """The defaults (and schema) from ``configs/defaults.yaml``."""
    return _read_yaml(DEFAULTS_PATH)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> (["optim", "lr"], 2e-4) with the value typed by ``yaml.safe_load``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key name")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML: {exc}") from exc
    return parts, value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a copy of ``config``; the key must already exist."""
    out = copy.deepcopy(config)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r} (in override {text!r})")
            node = child
        if parts[-1] not in node and not _is_free_form(parts[:-1]):
            raise ConfigError(f"unknown config key {'.'.join(parts)!r} (in override {text!r})")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


def _is_free_form(path: list[str]) -> bool:
    return bool(path) and path[-1].endswith(_FREE_FORM_SUFFIX)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_against_schema(config: Any, schema: Any, path: str) -> Any:
    """Reject unknown keys and wrongly typed values; returns the value with floats normalised."""
    if isinstance(schema, dict):
        if not isinstance(config, dict):
            raise ConfigError(f"config key {path!r} must be a mapping, got {_type_name(config)}")
        if path.rsplit(".", 1)[-1].endswith(_FREE_FORM_SUFFIX):
            return config
        out = {}
        for key, value in config.items():
            name = f"{path}.{key}" if path else str(key)
            if key not in schema:
                known = ", ".join(sorted(str(k) for k in schema))
                raise ConfigError(f"unknown config key {name!r}; known keys here: {known}")
            out[key] = _check_against_schema(value, schema[key], name)
        for key, value in schema.items():  # keys the experiment did not set keep their default
            if key not in out:
                out[key] = copy.deepcopy(value)
        return out
    if schema is None or config is None:
        return config  # null default: optional, any type; null value: "not set"
    if isinstance(schema, bool):
        if not isinstance(config, bool):
            raise ConfigError(f"config key {path!r} must be true/false, got {config!r}")
        return config
    if isinstance(schema, float):
        if isinstance(config, bool):
            raise ConfigError(f"config key {path!r} must be a number, got {config!r}")
        if isinstance(config, (int, float)):
            return float(config)
        if isinstance(config, str):
            try:
                return float(config)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"config key {path!r} must be a number, got {config!r}")
    if isinstance(schema, int):
        if isinstance(config, bool) or not isinstance(config, int):
            raise ConfigError(f"config key {path!r} must be an integer, got {config!r}")
        return config
    if isinstance(schema, str):
        if not isinstance(config, str):
            raise ConfigError(f"config key {path!r} must be a string, got {config!r}")
        return config
    if isinstance(schema, list):
        if not isinstance(config, list):
            raise ConfigError(f"config key {path!r} must be a list, got {config!r}")
        return config
    return config


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"config key {key!r}: {message}")


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check a merged config against the defaults' schema and the value ranges; returns the typed config."""
    config = _check_against_schema(config, load_defaults(), "")
    d, o, t = config["data"], config["optim"], config["train"]
    _require(d["height"] > 0 and d["height"] % 32 == 0, "data.height", f"must be a positive multiple of 32, got {d['height']}")
    _require(d["width"] > 0 and d["width"] % 32 == 0, "data.width", f"must be a positive multiple of 32, got {d['width']}")
    offsets = d["frame_offsets"]
    _require(len(offsets) >= 2 and offsets[0] == 0 and all(isinstance(x, int) for x in offsets)
             and 0 not in offsets[1:], "data.frame_offsets",
             f"must be integers starting with 0 (the target) then >= 1 non-zero source offsets, got {offsets}")
    _require(d["max_instances"] >= 0, "data.max_instances", f"must be >= 0 (0 = all), got {d['max_instances']}")
    _require(o["lr"] > 0, "optim.lr", f"must be > 0, got {o['lr']}")
    _require(o["name"] in ("adam", "adamw"), "optim.name", f"must be adam or adamw, got {o['name']!r}")
    _require(o["scheduler"] in ("step", "none"), "optim.scheduler", f"must be step or none, got {o['scheduler']!r}")
    _require(o["scheduler_unit"] in ("epoch", "step"), "optim.scheduler_unit",
             f"must be epoch or step, got {o['scheduler_unit']!r}")
    _require(o["step_size"] >= 1, "optim.step_size", f"must be >= 1, got {o['step_size']}")
    _require(0 < o["gamma"] <= 1, "optim.gamma", f"must be in (0, 1], got {o['gamma']}")
    _require(o["grad_clip"] >= 0, "optim.grad_clip", f"must be >= 0 (0 = off), got {o['grad_clip']}")
    _require(t["batch_size"] >= 1, "train.batch_size", f"must be >= 1, got {t['batch_size']}")
    _require(t["epochs"] >= 1, "train.epochs", f"must be >= 1, got {t['epochs']}")
    _require(t["max_steps"] >= 0, "train.max_steps", f"must be >= 0 (0 = epochs decide), got {t['max_steps']}")
    _require(t["num_workers"] >= 0, "train.num_workers", f"must be >= 0, got {t['num_workers']}")
    freeze = t["freeze"]
    _require(isinstance(freeze, list) and all(name in FREEZABLE_NETS for name in freeze)
             and len(set(freeze)) == len(freeze), "train.freeze",
             f"must be a list of distinct network names from {list(FREEZABLE_NETS)}, got {freeze!r}")
    _require(config["model"]["motion_encoder_init"] in ("fresh", "pose"), "model.motion_encoder_init",
             f"must be fresh or pose, got {config['model']['motion_encoder_init']!r}")
    _require(config["model"]["motion_encoder_init"] == "fresh" or config["model"]["use_motion_net"],
             "model.motion_encoder_init", "pose needs model.use_motion_net: true")
    init = config["model"]["init_weights"]
    _require(init is None or (isinstance(init, str) and init.strip() != ""), "model.init_weights",
             f"must be null or a checkpoint path, got {init!r}")
    losses = config["losses"]
    if losses["flow3d"] or losses["explainability"]:
        _require(config["model"]["use_motion_net"], "losses.flow3d" if losses["flow3d"] else "losses.explainability",
                 "needs model.use_motion_net: true (the motion net provides it)")
    if losses["instance"]:
        _require(config["model"]["use_obj_pose"], "losses.instance", "needs model.use_obj_pose: true")
    _require(config["depth_prior"]["source"] in ("snapshot", "checkpoint"), "depth_prior.source",
             f"must be snapshot or checkpoint, got {config['depth_prior']['source']!r}")
    # depth_prior.checkpoint is required by losses.normal / losses.ranking with source checkpoint (the default);
    # that is checked where the prior is built (depth_sfm_training.depth_prior.DepthPrior, a ConfigError naming
    # the key), so that the shipped normal_losses / full configs still load and print without a path
    if losses["auto_weight"] != "none" and not config["data"]["use_dynamic_masks"]:
        # without dataset masks the masks would be the motion net's dynamic probability > 0.5; only the flow3d
        # terms train it as a dynamic-mask predictor. Untrained it stays near its initial 0.05: every weight is 1.
        _require(bool(losses["flow3d"]), "losses.auto_weight",
                 "with data.use_dynamic_masks: false the dynamic masks must come from a trained motion net, and "
                 "only losses.flow3d trains it (its dynamic-probability term); otherwise its probability stays "
                 "near its initial 0.05, no pixel passes 0.5 and every weight is 1. Use dataset masks "
                 "(data.use_dynamic_masks: true) or switch on losses.flow3d")
    _require(config["depth_prior"]["refresh_steps"] >= 1, "depth_prior.refresh_steps",
             f"must be >= 1, got {config['depth_prior']['refresh_steps']}")
    for key in ("log_every", "image_log_every", "checkpoint_every", "val_every"):
        _require(config["log"][key] >= 0, f"log.{key}", f"must be >= 0 (0 = off), got {config['log'][key]}")
    _require(isinstance(config["device"], str) and (config["device"] in ("auto", "cpu", "cuda")
             or config["device"].startswith("cuda:")), "device",
             f"must be auto, cpu, cuda or cuda:N, got {config['device']!r}")
    return config


def load_config(path: str | os.PathLike | None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Defaults <- experiment file (with its ``_base_`` chain) <- overrides, validated.

    ``path`` None gives the defaults. Raises :class:`ConfigError` naming the offending key.
    """
    config = load_defaults()
    if path is not None:
        config = deep_merge(config, _resolve_file(Path(path), 0, ()))
    config = apply_overrides(config, overrides)
    return validate(config)


def dump_config(config: Mapping[str, Any]) -> str:
    """YAML text of a config (what the checkpoint and the output folder store)."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)


def list_experiment_configs() -> list[Path]:
    """All experiment files shipped in ``configs/`` (everything but the defaults)."""
    return sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name != DEFAULTS_PATH.name)
