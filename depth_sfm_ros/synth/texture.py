"""Seeded procedural textures, functions of surface coordinates in metres (numpy only).

Because the colour of a surface point depends only on its surface coordinates, the same point
has the same colour in every frame (what view-synthesis losses need). Octaves finer than about
one pixel at the viewing distance are faded out (cheap anti-aliasing), so distant surfaces do
not shimmer.
"""
from __future__ import annotations

import numpy as np

def hash2d(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Integer lattice hash -> float32 in [0, 1). ix, iy int64 arrays (any shape), seed int or array."""
    x = np.asarray(ix, dtype=np.int64).astype(np.uint32)  # wraps modulo 2**32 (two's complement)
    y = np.asarray(iy, dtype=np.int64).astype(np.uint32)
    s = np.asarray(seed, dtype=np.int64).astype(np.uint32)
    with np.errstate(over="ignore"):
        h = x * np.uint32(0x8DA6B343) ^ y * np.uint32(0xD8163841) ^ s * np.uint32(0xCB1AB31F)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(a_m: np.ndarray, b_m: np.ndarray, cell_m: float, seed: np.ndarray | int) -> np.ndarray:
    """Smooth value noise in [0, 1] on a square lattice of ``cell_m`` metres; a_m, b_m float arrays."""
    a = np.asarray(a_m, dtype=np.float32) * np.float32(1.0 / cell_m)
    b = np.asarray(b_m, dtype=np.float32) * np.float32(1.0 / cell_m)
    fa_floor, fb_floor = np.floor(a), np.floor(b)
    fa, fb = a - fa_floor, b - fb_floor
    ia, ib = fa_floor.astype(np.int64), fb_floor.astype(np.int64)
    wa = fa * fa * (3.0 - 2.0 * fa)
    wb = fb * fb * (3.0 - 2.0 * fb)
    n00 = hash2d(ia, ib, seed)
    n10 = hash2d(ia + 1, ib, seed)
    n01 = hash2d(ia, ib + 1, seed)
    n11 = hash2d(ia + 1, ib + 1, seed)
    top = n00 + (n10 - n00) * wa
    bottom = n01 + (n11 - n01) * wa
    return top + (bottom - top) * wb


# (cell size in metres, amplitude): low-frequency shading down to centimetre grain
OCTAVES: tuple[tuple[float, float], ...] = ((3.0, 0.30), (0.8, 0.25), (0.22, 0.25), (0.06, 0.20))


def fbm(a_m: np.ndarray, b_m: np.ndarray, seed: np.ndarray | int, footprint_m: np.ndarray,
        contrast: float = 2.0) -> np.ndarray:
    """Sum of value-noise octaves, float32 in [0, 1] around 0.5; octaves whose cell is smaller than
    ~2 pixel footprints fade to their mean (anti-aliasing).

    a_m, b_m: surface coordinates (N,) metres; seed: (N,) or int; footprint_m: (N,) metres per pixel;
    contrast: gain on the deviation from 0.5.
    """
    out = np.zeros(np.shape(a_m), dtype=np.float32)
    total = sum(amp for _, amp in OCTAVES)
    for k, (cell, amp) in enumerate(OCTAVES):
        weight = np.clip(cell / (2.0 * footprint_m) - 1.0, 0.0, 1.0).astype(np.float32)
        noise = value_noise(a_m, b_m, cell, np.asarray(seed, dtype=np.int64) * 7 + k)
        out += np.float32(amp * contrast / total) * weight * (noise - np.float32(0.5))
    return np.clip(out + np.float32(0.5), 0.0, 1.0)


def _square_wave_integral(x: np.ndarray, period: float, duty: float) -> np.ndarray:
    """Integral from 0 to x of the 0/1 square wave that is 1 on the first ``duty`` of each period."""
    cycles = np.floor(x / period)
    return cycles * duty * period + np.minimum(x - cycles * period, duty * period)


def stripes(coord_m: np.ndarray, period_m: float, duty: float, footprint_m: np.ndarray) -> np.ndarray:
    """Box-filtered (anti-aliased) 0/1 stripes, float32 in [0, 1]: 1 on the first ``duty`` fraction of
    each period, averaged over one pixel footprint (so edges are grey, not jagged)."""
    x = np.asarray(coord_m, dtype=np.float64)
    w = np.maximum(np.asarray(footprint_m, dtype=np.float64), 1e-6)
    value = (_square_wave_integral(x + w / 2, period_m, duty) - _square_wave_integral(x - w / 2, period_m, duty)) / w
    return np.clip(value, 0.0, 1.0).astype(np.float32)


def band(coord_m: np.ndarray, centre_m: float, half_width_m: float, footprint_m: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator of |coord - centre| < half_width, float32 in [0, 1]."""
    dist = np.abs(np.asarray(coord_m, dtype=np.float64) - centre_m)
    w = np.maximum(np.asarray(footprint_m, dtype=np.float64), 1e-6)
    return np.clip((half_width_m - dist) / w + 0.5, 0.0, 1.0).astype(np.float32)


# --- pattern families of the randomised profiles -----------------------------------------------
# Every pattern is a function of surface coordinates (a_m, b_m) in metres only (world-anchored),
# returns float32 in [0, 1] and fades to its mean where the period is below ~2 pixel footprints.
FAMILIES: tuple[str, ...] = ("noise", "stripes", "bricks", "checker", "dots", "diagonal")


def _fade_to_mean(pattern: np.ndarray, mean: float | np.ndarray, period_m: np.ndarray,
                  footprint_m: np.ndarray) -> np.ndarray:
    """Blend ``pattern`` towards its mean where period / footprint < 4 (anti-aliasing)."""
    weight = np.clip(np.asarray(period_m) / (2.0 * np.asarray(footprint_m)) - 1.0, 0.0, 1.0)
    return (mean + weight * (pattern - mean)).astype(np.float32)


def noise_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                  seed: np.ndarray | int) -> np.ndarray:
    """Two octaves of value noise with cells of ``period_m`` and period / 3 (N,) -> (N,)."""
    coarse = value_noise(a_m / period_m, b_m / period_m, 1.0, np.asarray(seed, dtype=np.int64) * 3 + 101)
    fine = value_noise(3.0 * a_m / period_m, 3.0 * b_m / period_m, 1.0, np.asarray(seed, dtype=np.int64) * 3 + 102)
    fine = _fade_to_mean(fine, 0.5, period_m / 3.0, footprint_m)
    return _fade_to_mean(0.65 * coarse + 0.35 * fine, 0.5, period_m, footprint_m)


def stripes_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                    seed: np.ndarray | int) -> np.ndarray:
    """Stripes across ``a`` (planks, wallpaper), duty 0.5, box-filtered."""
    return _fade_to_mean(stripes(a_m, period_m, 0.5, footprint_m), 0.5, period_m, footprint_m)


def diagonal_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                     seed: np.ndarray | int) -> np.ndarray:
    """Stripes at 45 degrees (held-out family)."""
    coord = (np.asarray(a_m, dtype=np.float64) + np.asarray(b_m, dtype=np.float64)) * (1.0 / np.sqrt(2.0))
    return _fade_to_mean(stripes(coord, period_m, 0.5, footprint_m * np.sqrt(2.0)), 0.5, period_m, footprint_m)


def checker_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                    seed: np.ndarray | int) -> np.ndarray:
    """Checkerboard of squares period / 2: XOR of two box-filtered stripe patterns (exact for a
    separable box filter: E[a xor b] = Ea + Eb - 2 Ea Eb)."""
    sa = stripes(a_m, period_m, 0.5, footprint_m)
    sb = stripes(b_m, period_m, 0.5, footprint_m)
    return _fade_to_mean(sa + sb - 2.0 * sa * sb, 0.5, period_m, footprint_m)


def bricks_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                   seed: np.ndarray | int) -> np.ndarray:
    """Running-bond bricks ``period`` long and period / 2.5 high, mortar 8 % of the height:
    1 on bricks, 0 on mortar; every other row shifted by half a brick."""
    period = np.asarray(period_m, dtype=np.float64)
    row_h = period / 2.5
    b = np.asarray(b_m, dtype=np.float64)
    shift = 0.5 * period * np.mod(np.floor(b / row_h), 2.0)
    rows = stripes(b, row_h, 0.92, footprint_m)
    cols = stripes(np.asarray(a_m, dtype=np.float64) + shift, period, 0.96, footprint_m)
    return _fade_to_mean(rows * cols, 0.92 * 0.96, row_h, footprint_m)


def dots_pattern(a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray, footprint_m: np.ndarray,
                 seed: np.ndarray | int) -> np.ndarray:
    """Disks of radius 0.3 period on a square lattice (held-out family), anti-aliased edges."""
    period = np.asarray(period_m, dtype=np.float64)
    fa = np.asarray(a_m, dtype=np.float64) / period
    fb = np.asarray(b_m, dtype=np.float64) / period
    dist_m = np.hypot(fa - np.floor(fa) - 0.5, fb - np.floor(fb) - 0.5) * period
    disk = np.clip((0.3 * period - dist_m) / np.maximum(footprint_m, 1e-6) + 0.5, 0.0, 1.0)
    return _fade_to_mean(disk, np.pi * 0.09, period, footprint_m)


PATTERNS = {"noise": noise_pattern, "stripes": stripes_pattern, "bricks": bricks_pattern,
            "checker": checker_pattern, "dots": dots_pattern, "diagonal": diagonal_pattern}


def family_pattern(family_id: np.ndarray, a_m: np.ndarray, b_m: np.ndarray, period_m: np.ndarray,
                   footprint_m: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per-point pattern value (N,) float32 in [0, 1]; ``family_id`` (N,) indexes :data:`FAMILIES`,
    the other arrays are (N,) (surface coordinates and periods in metres)."""
    out = np.full(np.shape(a_m), 0.5, dtype=np.float32)
    for index, name in enumerate(FAMILIES):
        sel = family_id == index
        if sel.any():
            out[sel] = PATTERNS[name](a_m[sel], b_m[sel], period_m[sel], footprint_m[sel], seed[sel])
    return out
