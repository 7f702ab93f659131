"""The eval-bag report: ``report.md`` and ``report.html`` (same content) with PNGs beside them.

Pictures (matplotlib, Agg backend): ``trajectory.png`` (top view of the aligned predicted
trajectory against ground truth), ``errors.png`` (per-frame depth abs_rel, position error and
scale over time), ``strip.png`` (a few frames: image, predicted depth, GT depth, error, mask vs
GT mask). A picture whose data is missing is left out and the report says why.

numpy + OpenCV + matplotlib (imported inside the functions).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_sfm_ros.runtime.visualize import colorize_depth

DEPTH_COLUMNS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


@dataclass
class StripFrame:
    """One column group of the frame strip. Arrays are at the ground-truth resolution where GT exists.

    image_rgb (H, W, 3) uint8; pred_depth_m (H, W) float32 (after the report's median scaling, NaN
    unknown); gt_depth_m / gt_mask / pred_mask (H, W) or None.
    """

    stamp_s: float
    image_rgb: np.ndarray
    pred_depth_m: np.ndarray
    gt_depth_m: np.ndarray | None = None
    pred_mask: np.ndarray | None = None
    gt_mask: np.ndarray | None = None


@dataclass
class ReportData:
    """Series for the pictures.

    stamps_s (N,) frame stamps; abs_rel (N,) per-frame median-scaled abs_rel (NaN without GT);
    scale (N,) the pipeline's scale; position_error_m (M,) and traj_stamps_s (M,) after alignment;
    gt_xyz / est_xyz (M, 3) ground-truth and aligned predicted positions.
    """

    stamps_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    abs_rel: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    traj_stamps_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gt_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    est_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    position_error_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    strip: list[StripFrame] = field(default_factory=list)
    min_depth_m: float = 1.0
    max_depth_m: float = 80.0


# --- pictures ---------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def top_view_axes(xyz: np.ndarray) -> tuple[int, int]:
    """The two axes along which the (ground-truth) trajectory spreads most: its top view."""
    spread = np.ptp(xyz, axis=0) if len(xyz) else np.zeros(3)
    first, second = np.argsort(spread)[::-1][:2]
    return int(min(first, second)), int(max(first, second))


def plot_trajectory(path: Path, data: ReportData, alignment: str) -> None:
    plt = _pyplot()
    a, b = top_view_axes(data.gt_xyz)
    names = "xyz"
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(data.gt_xyz[:, a], data.gt_xyz[:, b], "k-", label="ground truth")
    ax.plot(data.est_xyz[:, a], data.est_xyz[:, b], "r.-", markersize=3, label=f"predicted ({alignment}-aligned)")
    ax.plot(data.gt_xyz[:1, a], data.gt_xyz[:1, b], "go", label="start")
    ax.set_xlabel(f"{names[a]} [m]")
    ax.set_ylabel(f"{names[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("trajectory, top view")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_errors(path: Path, data: ReportData) -> None:
    plt = _pyplot()
    t0 = data.stamps_s[0] if len(data.stamps_s) else 0.0
    panels = [("depth abs_rel (median-scaled)", data.stamps_s, data.abs_rel),
              ("position error [m] (aligned)", data.traj_stamps_s, data.position_error_m),
              ("pipeline scale", data.stamps_s, data.scale)]
    panels = [p for p in panels if len(p[2]) and np.any(np.isfinite(p[2]))]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, t, values) in zip(axes[:, 0], panels):
        ax.plot(np.asarray(t) - t0, values, ".-", markersize=3)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("time since the first frame [s]")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _error_image(pred_m: np.ndarray, gt_m: np.ndarray, max_rel: float = 0.5) -> np.ndarray:
    """|pred - gt| / gt as an RGB image (magma, 0 .. max_rel), black where either is unknown."""
    import cv2
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(pred_m - gt_m) / gt_m
    valid = np.isfinite(rel)
    gray = (np.clip(np.where(valid, rel, 0.0) / max_rel, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.applyColorMap(gray, cv2.COLORMAP_MAGMA)[:, :, ::-1].copy()
    rgb[~valid] = 0
    return rgb


def mask_comparison(image_rgb: np.ndarray, pred_mask: np.ndarray | None, gt_mask: np.ndarray | None) -> np.ndarray:
    """Darkened image with true positives green, false positives red, misses blue (RGB uint8)."""
    out = (image_rgb.astype(np.float32) * 0.4).astype(np.uint8)
    pred = np.zeros(out.shape[:2], bool) if pred_mask is None else pred_mask.astype(bool)
    gt = np.zeros(out.shape[:2], bool) if gt_mask is None else gt_mask.astype(bool)
    out[pred & gt] = (0, 220, 0)
    out[pred & ~gt] = (230, 0, 0)
    out[~pred & gt] = (0, 90, 255)
    return out


def plot_strip(path: Path, data: ReportData) -> None:
    import cv2
    plt = _pyplot()
    columns = ["image", "predicted depth", "GT depth", "abs rel error", "mask vs GT"]
    rows = len(data.strip)
    fig, axes = plt.subplots(rows, len(columns), figsize=(3.2 * len(columns), 1.3 * rows + 0.6), squeeze=False)
    for r, frame in enumerate(data.strip):
        h, w = frame.pred_depth_m.shape
        image = frame.image_rgb if frame.image_rgb.shape[:2] == (h, w) else \
            cv2.resize(frame.image_rgb, (w, h), interpolation=cv2.INTER_AREA)
        panels = [image, colorize_depth(frame.pred_depth_m, data.min_depth_m, data.max_depth_m)[:, :, ::-1],
                  None if frame.gt_depth_m is None else
                  colorize_depth(frame.gt_depth_m, data.min_depth_m, data.max_depth_m)[:, :, ::-1],
                  None if frame.gt_depth_m is None else _error_image(frame.pred_depth_m, frame.gt_depth_m),
                  None if frame.pred_mask is None and frame.gt_mask is None else
                  mask_comparison(image, frame.pred_mask, frame.gt_mask)]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            if panel is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.imshow(panel, interpolation="nearest")
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        axes[r, 0].text(-0.02, 0.5, f"t={frame.stamp_s - data.strip[0].stamp_s:.2f}s", rotation=90, ha="right",
                        va="center", transform=axes[r, 0].transAxes, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- text -------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _sections(metrics: dict, pictures: dict[str, str]) -> list[tuple[str, list[Any]]]:
    """[(title, blocks)] where a block is a str paragraph, ("table", header, rows) or ("image", file, alt)."""
    sections: list[tuple[str, list[Any]]] = []
    source = metrics.get("source", {})
    overview = [("table", ["field", "value"], [
        ["bag", source.get("bag", "")], ["image topic", source.get("image_topic", "")],
        ["frames evaluated", metrics.get("frames", 0)], ["model", source.get("model", "")],
        ["backend", source.get("backend", "")], ["path", source.get("path", "offline")]])]
    if metrics.get("bag_error"):
        err = metrics["bag_error"]
        overview.append(f"**The bag is truncated or corrupt**: reading stopped after {err['messages_read']} messages "
                        f"({err['frames_read']} frames) at bag time {_fmt(err['last_stamp_s'])} s: "
                        f"{err['error']}. The metrics below cover the frames read.")
    for note in metrics.get("notes", []):
        overview.append(f"Note: {note}")
    sections.append(("Overview", overview))

    depth = metrics.get("depth")
    if depth:
        rows = [["all"] + [_fmt(depth.get(k)) for k in DEPTH_COLUMNS] + [depth.get("n_images", "")]]
        for region, values in depth.get("regions", {}).items():
            rows.append([region] + [_fmt(values.get(k)) for k in DEPTH_COLUMNS] + [values.get("n_images", "")])
        if "unscaled" in depth:
            u = depth["unscaled"]
            rows.append(["all, metric (no median scaling)"] + [_fmt(u.get(k)) for k in DEPTH_COLUMNS]
                        + [u.get("n_images", "")])
        blocks: list[Any] = [f"Per-image median scaling, valid ground truth in ({_fmt(depth.get('min_depth_m'))}, "
                             f"{_fmt(depth.get('max_depth_m'))}) m, averaged over images.",
                             ("table", ["region", *DEPTH_COLUMNS, "images"], rows)]
        sections.append(("Depth", blocks))
    odom = metrics.get("odometry")
    if odom:
        sections.append(("Odometry", [("table", ["ATE [m]", "RPE trans [m]", "RPE rot [deg]", "alignment",
                                                 "alignment scale", "poses"],
                                       [[_fmt(odom["ate_m"]), _fmt(odom["rpe_trans_m"]), _fmt(odom["rpe_rot_deg"]),
                                         odom["alignment"], _fmt(odom.get("alignment_scale")),
                                         odom.get("poses", "")]])]))
    mask = metrics.get("mask")
    if mask:
        sections.append(("Dynamic mask", [("table", ["IoU", "precision", "recall", "frames"],
                                           [[_fmt(mask["iou"]), _fmt(mask["precision"]), _fmt(mask["recall"]),
                                             mask.get("frames", "")]])]))
    speed, scale = metrics.get("speed", {}), metrics.get("scale", {})
    sections.append(("Speed and scale", [("table", ["fps", "latency p50 [ms]", "latency p99 [ms]", "scale mode",
                                                    "median GT/pred ratio"],
                                          [[_fmt(speed.get("fps")), _fmt(speed.get("latency_ms_p50")),
                                            _fmt(speed.get("latency_ms_p99")), scale.get("mode", ""),
                                            _fmt(scale.get("median_ratio_to_gt"))]])]))
    realtime, comparison = metrics.get("realtime"), metrics.get("comparison")
    if realtime:
        blocks = ["The bag was played over DDS at its recorded rate into a depth_sfm_node process; fps is frames "
                  "published per second of playback, latency is node output receive time - image publish time.",
                  ("table", ["frames played", "frames published", "dropped"],
                   [[realtime["frames_played"], realtime["frames_published"], realtime["dropped"]]])]
        if comparison:
            blocks += ["Offline pipeline vs node, depth on the frames both processed:",
                       ("table", ["frames compared", "max |depth difference| [m]", "valid-pixel mismatches"],
                        [[comparison["frames_compared"], _fmt(comparison["depth_max_abs_diff_m"]),
                          comparison["depth_valid_mismatch_pixels"]]])]
        sections.append(("Realtime (node over DDS)", blocks))
    pics: list[Any] = []
    for name, alt in (("trajectory", "trajectory top view"), ("errors", "errors over time"),
                      ("strip", "frames: image, predicted depth, GT depth, error, mask vs GT")):
        if name in pictures:
            pics.append(("image", pictures[name], alt))
    missing = [name for name in ("trajectory", "errors", "strip") if name not in pictures]
    if missing:
        pics.append(f"Not drawn (no data for them): {', '.join(missing)}.")
    sections.append(("Pictures", pics))
    return sections


def _markdown(sections: list[tuple[str, list[Any]]]) -> str:
    lines = ["# eval-bag report", ""]
    for title, blocks in sections:
        lines += [f"## {title}", ""]
        for block in blocks:
            if isinstance(block, str):
                lines += [block, ""]
            elif block[0] == "table":
                _, header, rows = block
                lines.append("| " + " | ".join(map(str, header)) + " |")
                lines.append("|" + "---|" * len(header))
                lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
                lines.append("")
            else:
                lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def _html(sections: list[tuple[str, list[Any]]]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>eval-bag report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:3px 8px;text-align:right}img{max-width:100%}</style>",
             "</head><body>", "<h1>eval-bag report</h1>"]
    for title, blocks in sections:
        parts.append(f"<h2>{e(title)}</h2>")
        for block in blocks:
            if isinstance(block, str):
                text = e(block)
                if text.startswith("**"):
                    bold_end = text.index("**", 2)
                    text = f"<b>{text[2:bold_end]}</b>{text[bold_end + 2:]}"
                parts.append(f"<p>{text}</p>")
            elif block[0] == "table":
                _, header, rows = block
                parts.append("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
            else:
                parts.append(f"<p><img src='{e(block[1])}' alt='{e(block[2])}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str | Path, metrics: dict, data: ReportData) -> dict[str, Path]:
    """Draw the pictures and write report.md + report.html into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, str] = {}
    written: dict[str, Path] = {}
    alignment = metrics.get("odometry", {}).get("alignment", "sim3")
    if len(data.gt_xyz) >= 2 and len(data.est_xyz) == len(data.gt_xyz):
        plot_trajectory(out_dir / "trajectory.png", data, alignment)
        pictures["trajectory"] = "trajectory.png"
    if len(data.stamps_s) >= 1 and (np.any(np.isfinite(data.abs_rel)) or np.any(np.isfinite(data.position_error_m))
                                    or np.any(np.isfinite(data.scale))):
        plot_errors(out_dir / "errors.png", data)
        pictures["errors"] = "errors.png"
    if data.strip:
        plot_strip(out_dir / "strip.png", data)
        pictures["strip"] = "strip.png"
    for name, file in pictures.items():
        written[name] = out_dir / file
    sections = _sections(metrics, pictures)
    written["report.md"] = out_dir / "report.md"
    written["report.md"].write_text(_markdown(sections))
    written["report.html"] = out_dir / "report.html"
    written["report.html"].write_text(_html(sections))
    return written
