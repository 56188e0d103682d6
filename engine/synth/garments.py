"""Synthetic FashionAI data: garments rendered with exactly known keypoints.

A garment is generated in three steps:

1. geometry: the category's keypoints in a canonical frame (parametric proportions, or a
   real FashionAI layout), then placement in the image (scale, rotation, mild perspective,
   position) -- vectorized over rows so `--annotations-only` writes 100k rows in seconds;
2. the outline: polygons (body, sleeves, legs) built *through* the rounded keypoints, so
   every integer keypoint in the CSV lies on the rendered garment mask;
3. painting: background clutter, a person and distractor garments behind, the textured,
   shaded garment, then occluders (hair, arms, hands, bags, a top over a waistband) aimed
   at keypoints with the real per-keypoint occlusion rates. A keypoint is occluded (v = 0)
   exactly when the occluder mask covers it.

Per-image randomness comes from `SeedSequence([seed, crc32(split), index])`, so a data set
is byte-identical whatever the number of worker processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine import schema
from engine.schema import CATEGORIES, CATEGORY_MASK, KEYPOINT_INDEX, NUM_KEYPOINTS


HARD_KINDS: tuple[str, ...] = ("crossed", "rotation", "cut", "low_contrast")
_K = KEYPOINT_INDEX
_TOPS = ("blouse", "outwear", "dress")

# Per-keypoint share of occluded (v = 0) points, measured on tests/data/fashionai/val.csv.
REAL_OCCLUSION_RATES: dict[str, dict[str, float]] = {
    "blouse": {"neckline_left": .19, "neckline_right": .20, "center_front": .05, "shoulder_left": .06,
               "shoulder_right": .07, "armpit_left": .46, "armpit_right": .48, "cuff_left_in": .09,
               "cuff_left_out": .03, "cuff_right_in": .10, "cuff_right_out": .03, "top_hem_left": .15,
               "top_hem_right": .14},
    "outwear": {"neckline_left": .15, "neckline_right": .17, "shoulder_left": .12, "shoulder_right": .13,
                "armpit_left": .60, "armpit_right": .60, "waistline_left": .03, "waistline_right": .03,
                "cuff_left_in": .13, "cuff_left_out": .02, "cuff_right_in": .14, "cuff_right_out": .03,
                "top_hem_left": .08, "top_hem_right": .07},
    "trousers": {"waistband_left": .28, "waistband_right": .29, "crotch": .05, "bottom_left_in": .05,
                 "bottom_left_out": .02, "bottom_right_in": .05, "bottom_right_out": .03},
    "skirt": {"waistband_left": .23, "waistband_right": .22, "hemline_left": .02, "hemline_right": .01},
    "dress": {"neckline_left": .15, "neckline_right": .14, "center_front": .02, "shoulder_left": .07,
              "shoulder_right": .07, "armpit_left": .37, "armpit_right": .39, "waistline_left": .07,
              "waistline_right": .08, "cuff_left_in": .11, "cuff_left_out": .02, "cuff_right_in": .11,
              "cuff_right_out": .02, "hemline_left": .01, "hemline_right": .02},
}
OCCLUSION_RATES = np.zeros((len(CATEGORIES), NUM_KEYPOINTS), dtype=np.float64)
for _c, _cat in enumerate(CATEGORIES):
    for _name, _r in REAL_OCCLUSION_RATES[_cat].items():
        OCCLUSION_RATES[_c, _K[_name]] = _r


@dataclass
class Sample:
    """One rendered image with its ground truth."""

    image: np.ndarray          # RGB uint8 (H, W, 3)
    category: int              # code into schema.CATEGORIES
    coords: np.ndarray         # (24, 2) float32, image pixels; -1 for keypoints the category lacks
    visibility: np.ndarray     # (24,) int8: 1 visible, 0 occluded (true position kept), -1 absent
    garment_mask: np.ndarray   # (H, W) bool: pixels of the rendered garment (before occluders)
    occluder_mask: np.ndarray  # (H, W) bool: pixels covered by occluders
    hard_kind: str | None      # None or one of HARD_KINDS


def hard_kinds_for(category: int | str) -> tuple[str, ...]:
    """The hard-case kinds a category can have (a skirt has nothing to cross)."""
    name = CATEGORIES[category_code_of(category)]
    return tuple(k for k in HARD_KINDS if not (k == "crossed" and name == "skirt"))


def category_code_of(category: int | str) -> int:
    """The category code of a code or a name; raises ValueError for anything else."""
    if isinstance(category, (int, np.integer)):
        if not 0 <= int(category) < len(CATEGORIES):
            raise ValueError(f"category code {category} out of range 0..{len(CATEGORIES) - 1}")
        return int(category)
    return schema.category_code(category)


# --- 1. geometry -----------------------------------------------------------------------------


def _set(K: np.ndarray, name: str, x: np.ndarray, y: np.ndarray) -> None:
    K[:, _K[name], 0] = x
    K[:, _K[name], 1] = y


def _top_keypoints(rng: np.random.Generator, cat: str, n: int) -> np.ndarray:
    """Canonical keypoints of blouse / outwear / dress (neck centre at the origin, y down)."""
    K = np.full((n, NUM_KEYPOINTS, 2), np.nan, dtype=np.float64)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    nw = u(0.06, 0.12)
    sy = u(0.02, 0.07)
    sw = nw + u(0.12, 0.2)
    ay = sy + u(0.17, 0.26)
    bw = sw * u(0.8, 0.97)
    _set(K, "neckline_left", -nw, u(-0.01, 0.01))
    _set(K, "neckline_right", nw, u(-0.01, 0.01))
    if cat != "outwear":
        _set(K, "center_front", u(-0.01, 0.01), u(0.04, 0.2))
    _set(K, "shoulder_left", -sw, sy + u(-0.01, 0.01))
    _set(K, "shoulder_right", sw, sy + u(-0.01, 0.01))
    _set(K, "armpit_left", -bw, ay + u(-0.01, 0.01))
    _set(K, "armpit_right", bw, ay + u(-0.01, 0.01))
    if cat == "blouse":
        sl = np.where(rng.random(n) < 0.3, u(0.08, 0.25), u(0.3, 0.75))
        hy = ay + u(0.3, 0.65)
        hw = bw * u(0.85, 1.2)
        _set(K, "top_hem_left", -hw, hy + u(-0.01, 0.01))
        _set(K, "top_hem_right", hw, hy + u(-0.01, 0.01))
    elif cat == "outwear":
        sl = u(0.45, 0.8)
        wy = ay + u(0.18, 0.32)
        ww = bw * u(0.85, 1.0)
        hy = wy + u(0.12, 0.65)
        hw = ww * u(0.98, 1.25)
        _set(K, "waistline_left", -ww, wy)
        _set(K, "waistline_right", ww, wy + u(-0.01, 0.01))
        _set(K, "top_hem_left", -hw, hy)
        _set(K, "top_hem_right", hw, hy + u(-0.01, 0.01))
    else:  # dress
        sl = np.where(rng.random(n) < 0.35, u(0.03, 0.08), u(0.1, 0.7))
        wy = ay + u(0.12, 0.28)
        ww = bw * u(0.72, 0.95)
        hy = wy + u(0.3, 1.1)
        hw = ww * (1.05 + (hy - wy) * u(0.2, 1.3))
        _set(K, "waistline_left", -ww, wy)
        _set(K, "waistline_right", ww, wy + u(-0.01, 0.01))
        _set(K, "hemline_left", -hw, hy + u(-0.02, 0.02))
        _set(K, "hemline_right", hw, hy + u(-0.02, 0.02))
    # Sleeves hang from the shoulder at angle theta from vertical; the cuff edge is
    # perpendicular to the sleeve, `cw` wide, never wider than the armhole.
    top = np.hypot(sw - bw, ay - sy)
    for side, sign in (("left", -1.0), ("right", 1.0)):
        th = np.radians(u(12, 55) + rng.normal(0, 4, n))
        sll = sl * u(0.93, 1.07)
        cw = np.minimum(u(0.08, 0.15), top * 0.95)
        dx, dy = sign * np.sin(th), np.cos(th)
        ox = K[:, _K[f"shoulder_{side}"], 0] + sll * dx
        oy = K[:, _K[f"shoulder_{side}"], 1] + sll * dy
        _set(K, f"cuff_{side}_out", ox, oy)
        _set(K, f"cuff_{side}_in", ox - sign * cw * np.cos(th), oy + cw * np.sin(th))
    return K


def _skirt_keypoints(rng: np.random.Generator, n: int) -> np.ndarray:
    K = np.full((n, NUM_KEYPOINTS, 2), np.nan, dtype=np.float64)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    wb = u(0.14, 0.24)
    L = u(0.3, 1.0)
    hw = wb * (1.05 + L * u(0.1, 1.4))
    _set(K, "waistband_left", -wb, u(-0.01, 0.01))
    _set(K, "waistband_right", wb, u(-0.01, 0.01))
    _set(K, "hemline_left", -hw, L + u(-0.02, 0.02))
    _set(K, "hemline_right", hw, L + u(-0.02, 0.02))
    return K


def _trousers_keypoints(rng: np.random.Generator, n: int) -> np.ndarray:
    K = np.full((n, NUM_KEYPOINTS, 2), np.nan, dtype=np.float64)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    wb = u(0.15, 0.24)
    cy = u(0.2, 0.3)
    L = np.where(rng.random(n) < 0.2, u(0.34, 0.5), u(0.75, 1.05))
    _set(K, "waistband_left", -wb, u(-0.01, 0.01))
    _set(K, "waistband_right", wb, u(-0.01, 0.01))
    _set(K, "crotch", u(-0.01, 0.01), cy)
    for side, sign in (("left", -1.0), ("right", 1.0)):
        lw = u(0.08, 0.17)
        out_x = sign * wb * u(0.7, 1.3) * (1 + 0.3 * (L - 0.5))
        # keep a gap between the legs at the bottom
        inner = out_x - sign * lw
        inner = np.where(sign * inner < 0.015, sign * 0.015, inner)
        out_x = inner + sign * lw
        y = L + u(-0.02, 0.02)
        _set(K, f"bottom_{side}_out", out_x, y)
        _set(K, f"bottom_{side}_in", inner, y + u(-0.01, 0.02))
    return K


def canonical_keypoints(rng: np.random.Generator, category: int | str, n: int) -> np.ndarray:
    """(n, 24, 2) parametric keypoints of a category in a canonical frame; NaN where absent."""
    name = CATEGORIES[category_code_of(category)]
    if name in _TOPS:
        return _top_keypoints(rng, name, n)
    if name == "skirt":
        return _skirt_keypoints(rng, n)
    return _trousers_keypoints(rng, n)


def _rotate_about(P: np.ndarray, pivot: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate points P (n, m, 2) about pivot (n, 2) by angle (n,) radians (y down: clockwise)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    d = P - pivot[:, None, :]
    return np.stack([d[..., 0] * c - d[..., 1] * s, d[..., 0] * s + d[..., 1] * c], axis=-1) + pivot[:, None, :]


def _cross(rng: np.random.Generator, K: np.ndarray, category: str) -> np.ndarray:
    """Swing the sleeves (or legs) across the front so each cuff/bottom ends on the other side."""
    K = K.copy()
    n = len(K)
    if category in _TOPS:
        limbs = (("left", "shoulder_left", "armpit_left", ("cuff_left_out", "cuff_left_in"), 1.0),
                 ("right", "shoulder_right", "armpit_right", ("cuff_right_out", "cuff_right_in"), -1.0))
    elif category == "trousers":
        limbs = (("left", "waistband_left", "crotch", ("bottom_left_out", "bottom_left_in"), 1.0),
                 ("right", "waistband_right", "crotch", ("bottom_right_out", "bottom_right_in"), -1.0))
    else:
        raise ValueError(f"a {category} has no sleeves or legs to cross")
    axis_x = np.nanmean(K[:, :, 0], axis=1)
    for _, a, b, ends, sign in limbs:
        pivot = (K[:, _K[a]] + K[:, _K[b]]) / 2
        idx = [_K[e] for e in ends]
        mid = K[:, idx].mean(axis=1)
        vec = mid - pivot
        length = np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 0.35)
        # the limb end must land `target` beyond the garment's axis on the other side
        target = axis_x + sign * rng.uniform(0.06, 0.16, n)
        sin_new = np.clip((target - pivot[:, 0]) / length, -0.97, 0.97)
        new = np.arcsin(sin_new)          # angle from straight down, positive towards +x
        old = np.arctan2(vec[:, 0], vec[:, 1])
        # y-down rotation by -delta turns a downward vector towards +x by delta
        scale = (length / np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-6))[:, None, None]
        ends_pts = pivot[:, None, :] + (K[:, idx] - pivot[:, None, :]) * scale
        K[:, idx] = _rotate_about(ends_pts, pivot, -(new - old))
    return K


def _place(rng: np.random.Generator, K: np.ndarray, category: str, H: np.ndarray, W: np.ndarray,
           hard: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (n, 24, 2) -> rounded image pixels (NaN where absent) and in-frame presence (n, 24).

    `hard` is an (n,) array of hard-kind names ('' for none). H, W are (n,) image sizes.
    """
    n = len(K)
    present = ~np.isnan(K[:, :, 0])
    P = np.where(present[..., None], K, 0.0)
    lo = np.where(present[..., None], K, np.inf).min(axis=1)
    hi = np.where(present[..., None], K, -np.inf).max(axis=1)
    ctr, ext = (lo + hi) / 2, np.maximum(hi[:, 1] - lo[:, 1], 1e-6)
    P = (P - ctr[:, None, :]) / ext[:, None, None]
    # mild perspective: a projective warp of the unit-height garment
    px, py = rng.uniform(-0.12, 0.12, n)[:, None], rng.uniform(-0.12, 0.12, n)[:, None]
    den = 1.0 + px * P[..., 0] + py * P[..., 1]
    P = P / den[..., None]
    rot = np.radians(np.clip(rng.normal(0, 5, n), -12, 12))
    is_rot = hard == "rotation"
    rot = np.where(is_rot, np.radians(rng.uniform(40, 180, n) * rng.choice([-1, 1], n)), rot)
    P = _rotate_about(P, np.zeros((n, 2)), rot)
    P = np.where(present[..., None], P, np.nan)
    lo, hi = np.nanmin(P, axis=1), np.nanmax(P, axis=1)
    size = hi - lo
    frac = rng.uniform(0.25, 0.95, n)
    is_cut = hard == "cut"
    frac = np.where(is_cut, rng.uniform(0.6, 1.0, n), frac)
    s = frac * H / np.maximum(size[:, 1], 1e-6)
    margin = 3.0
    # a cut garment is pushed over one edge (left, top, right, bottom); the other axis must fit
    side = rng.integers(0, 4, n)
    room = _cut_room(P, CATEGORIES.index(category))
    side = np.where(room[np.arange(n), side] >= 0.12, side, room.argmax(axis=1))
    fit_x = ~is_cut | (side % 2 == 1)
    fit_y = ~is_cut | (side % 2 == 0)
    s = np.minimum(s, np.where(fit_x, (W - 2 * margin) / np.maximum(size[:, 0], 1e-6), np.inf))
    s = np.minimum(s, np.where(fit_y, (H - 2 * margin) / np.maximum(size[:, 1], 1e-6), np.inf))
    # along the cut axis the far side stays in the frame: extent * (1 - deepest cut) must fit
    deepest = 0.9 * np.minimum(room[np.arange(n), side], 0.4)
    cut_lim = np.where(side % 2 == 0, W, H) - 2 * margin - 2
    cut_size = np.where(side % 2 == 0, size[:, 0], size[:, 1])
    s = np.minimum(s, np.where(is_cut, cut_lim / np.maximum(cut_size * (1 - deepest), 1e-6), np.inf))
    P = P * s[:, None, None]
    lo, hi = lo * s[:, None], hi * s[:, None]
    t = np.empty((n, 2))
    for d, lim in ((0, W), (1, H)):
        a, b = margin - lo[:, d], lim - 1 - margin - hi[:, d]
        t[:, d] = a + rng.random(n) * np.maximum(b - a, 0)
    cut_rows = np.flatnonzero(is_cut)
    if len(cut_rows):
        t[cut_rows] = _cut_translation(rng, P[cut_rows], CATEGORIES.index(category), side[cut_rows],
                                       t[cut_rows], H[cut_rows], W[cut_rows], margin)
    P = np.rint(P + t[:, None, :])
    inside = (P[..., 0] >= 0) & (P[..., 0] <= (W - 1)[:, None]) & (P[..., 1] >= 0) & (P[..., 1] <= (H - 1)[:, None])
    return P, present & inside


def _cut_room(P: np.ndarray, category: int, margin: np.ndarray | float = 0.0) -> np.ndarray:
    """(n, 4): how deep (share of the extent) a cut over the left, top, right, bottom edge may go
    while the normalizer pair stays `margin` pixels inside the frame."""
    ka, kb = schema.NORMALIZER_PAIRS[category]
    lo, hi = np.nanmin(P, axis=1), np.nanmax(P, axis=1)
    nlo, nhi = np.minimum(P[:, ka], P[:, kb]), np.maximum(P[:, ka], P[:, kb])
    ext = np.maximum(hi - lo, 1e-6)
    return np.concatenate([(nlo - lo - margin) / ext, (hi - nhi - margin) / ext], axis=1)


def _cut_translation(rng: np.random.Generator, P: np.ndarray, category: int, side: np.ndarray,
                     t: np.ndarray, H: np.ndarray, W: np.ndarray, margin: float) -> np.ndarray:
    """Translations that push 10-40 % of each garment over edge `side` (0 left, 1 top, 2 right,
    3 bottom), never so far that the normalizer pair leaves the frame."""
    t = t.copy()
    rows = np.arange(len(P))
    lo, hi = np.nanmin(P, axis=1), np.nanmax(P, axis=1)
    ext = np.maximum(hi - lo, 1e-6)
    room = _cut_room(P, category, margin)[rows, side]
    d = side % 2
    lim = np.where(d == 0, W, H) - 1
    lo_d, hi_d, ext_d = lo[rows, d], hi[rows, d], ext[rows, d]
    needed = 1 - (lim - 2 * margin) / ext_d  # so that the far side stays in the frame
    f = np.maximum(np.clip(rng.uniform(0.1, 0.4, len(P)), 0.0, np.maximum(room, 0.0)), needed)
    # past the edge by f of the extent (at least 2 px, so the extreme point leaves the frame)
    depth = np.maximum(f * ext_d, np.minimum(2.0, np.maximum(room, 0) * ext_d))
    t[rows, d] = np.where(side < 2, -lo_d - depth, lim - hi_d + depth)
    return t


# --- 2. outline --------------------------------------------------------------------------------


def _curve(a: np.ndarray, b: np.ndarray, bulge: float, centre: np.ndarray, steps: int = 6) -> np.ndarray:
    """Points from a to b (a excluded, b included) bowed by `bulge`*|ab| away from `centre`."""
    d = b - a
    length = float(np.hypot(*d))
    if length < 1e-6 or bulge == 0:
        return b[None, :]
    nrm = np.array([-d[1], d[0]]) / length
    mid = (a + b) / 2
    if np.dot(nrm, mid - centre) < 0:
        nrm = -nrm
    c = mid + nrm * (2 * bulge * length)
    t = np.linspace(0, 1, steps + 1)[1:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t ** 2 * b


def _through(a: np.ndarray, m: np.ndarray, b: np.ndarray, steps: int = 8) -> np.ndarray:
    """A quadratic Bezier from a to b passing through m at its middle (a excluded, m and b included)."""
    c = 2 * m - (a + b) / 2
    t = np.linspace(0, 1, 2 * steps + 1)[1:, None]
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t ** 2 * b


def _path(start: np.ndarray, *segments: np.ndarray) -> np.ndarray:
    return np.concatenate([start[None, :], *segments], axis=0)


def _quad(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """A limb polygon p1, p2, then the end points in the order that does not cross itself."""
    straight = np.hypot(*(q2 - p2)) + np.hypot(*(q1 - p1))
    swapped = np.hypot(*(q1 - p2)) + np.hypot(*(q2 - p1))
    return np.array([p1, p2, q2, q1]) if straight <= swapped else np.array([p1, p2, q1, q2])


@dataclass
class _Outline:
    parts: list[np.ndarray]      # polygons, back to front
    details: list[tuple[str, np.ndarray]]  # (kind, points) drawn on top: seams, trims, bands
    centre: np.ndarray


def _outline(category: str, P: np.ndarray, style: dict) -> _Outline:
    """Polygons through the keypoints P (24, 2) (image pixels; may lie outside for cut garments)."""
    p = {name: P[i].astype(np.float64) for name, i in _K.items()}
    centre = P[CATEGORY_MASK[CATEGORIES.index(category)]].mean(axis=0)
    side_b = style["side_bulge"]
    hem_b = style["hem_bulge"]
    details: list[tuple[str, np.ndarray]] = []
    if category in _TOPS:
        nl, nr, sl, sr, al, ar = (p[k] for k in ("neckline_left", "neckline_right", "shoulder_left",
                                                    "shoulder_right", "armpit_left", "armpit_right"))
        if category == "blouse":
            hl, hr = p["top_hem_left"], p["top_hem_right"]
            left_side = _curve(al, hl, side_b, centre)
            right_up = _curve(hr, ar, side_b, centre)
        elif category == "outwear":
            wl, wr, hl, hr = p["waistline_left"], p["waistline_right"], p["top_hem_left"], p["top_hem_right"]
            left_side = np.concatenate([_curve(al, wl, -0.04, centre), _curve(wl, hl, 0.02, centre)])
            right_up = np.concatenate([_curve(hr, wr, 0.02, centre), _curve(wr, ar, -0.04, centre)])
        else:
            wl, wr, hl, hr = p["waistline_left"], p["waistline_right"], p["hemline_left"], p["hemline_right"]
            left_side = np.concatenate([_curve(al, wl, -0.05, centre), _curve(wl, hl, side_b, centre)])
            right_up = np.concatenate([_curve(hr, wr, side_b, centre), _curve(wr, ar, -0.05, centre)])
        hem = _curve(hl, hr, hem_b, centre, steps=8)
        if category == "outwear":
            neck_mid = (nl + nr) / 2
            hem_mid = (hl + hr) / 2
            v = neck_mid + (hem_mid - neck_mid) * style["v_depth"]
            neck = np.array([v])
            details.append(("opening", np.array([v, hem_mid])))
            details.append(("lapel", np.array([nl, v, nl + (v - nl) * 0.45 + (sl - nl) * 0.35])))
            details.append(("lapel", np.array([nr, v, nr + (v - nr) * 0.45 + (sr - nr) * 0.35])))
            details.append(("shirt", np.array([nl, nr, v])))
            if style["placket"]:  # flap pockets, half way between waist and hem
                for w_, h_ in ((wl, hl), (wr, hr)):
                    c = w_ + (h_ - w_) * 0.55
                    c = c + (hem_mid - c) * 0.35
                    across = (hr - hl) * 0.14
                    down = (h_ - w_) * 0.22
                    details.append(("pocket", np.array([c - across, c + across, c + across + down, c - across + down])))
        else:
            cf = p["center_front"]
            if style["v_neck"]:
                neck = np.array([cf, nl])
            else:
                neck = _through(nr, cf, nl, steps=6)
            details.append(("trim", np.concatenate([nr[None], neck])))
            if category == "blouse" and style["placket"]:
                details.append(("opening", np.array([cf, (hl + hr) / 2])))
            if category == "dress":
                details.append(("belt", np.array([wl, wr])))
        body = _path(nl, _curve(nl, sl, 0.03, centre, 3), np.array([al]), left_side, hem, right_up,
                     np.array([sr]), _curve(sr, nr, 0.03, centre, 3), neck)
        sleeves = [_quad(sl, al, p["cuff_left_out"], p["cuff_left_in"]),
                   _quad(sr, ar, p["cuff_right_out"], p["cuff_right_in"])]
        for s in sleeves:
            details.append(("cuff", s[2:]))
        parts = [body, *sleeves] if style["sleeves_front"] else [*sleeves, body]
    elif category == "skirt":
        wl, wr, hl, hr = p["waistband_left"], p["waistband_right"], p["hemline_left"], p["hemline_right"]
        body = _path(wl, _curve(wl, hl, side_b, centre), _curve(hl, hr, hem_b, centre, 10),
                     _curve(hr, wr, side_b, centre), np.array([wl]))
        parts = [body]
        band = style["band"]
        details.append(("band", np.array([wl, wr, wr + (hr - wr) * band, wl + (hl - wl) * band])))
        for f in np.linspace(0.2, 0.8, style["pleats"]):
            top = wl + (wr - wl) * f
            details.append(("pleat", np.array([top + ((hl + (hr - hl) * f) - top) * band,
                                               hl + (hr - hl) * f])))
    else:  # trousers
        wl, wr, cr = p["waistband_left"], p["waistband_right"], p["crotch"]
        wm = (wl + wr) / 2
        left = np.concatenate([np.array([wl, wm, cr]),
                               _quad(cr, wl, p["bottom_left_in"], p["bottom_left_out"])[2:][::-1]])
        right = np.concatenate([np.array([wr, wm, cr]),
                                _quad(cr, wr, p["bottom_right_in"], p["bottom_right_out"])[2:][::-1]])
        parts = [left, right] if style["sleeves_front"] else [right, left]
        band = style["band"] * 0.5
        bl = wl + (p["bottom_left_out"] - wl) * band
        br = wr + (p["bottom_right_out"] - wr) * band
        details.append(("band", np.array([wl, wr, br, bl])))
        details.append(("fly", np.array([wm, wm + (cr - wm) * 0.7])))
        if style["placket"]:  # slanted front pockets
            for w0, b0 in ((wl, p["bottom_left_out"]), (wr, p["bottom_right_out"])):
                a = w0 + (wm - w0) * 0.35 + (b0 - w0) * 0.04
                details.append(("pleat", np.array([a, w0 + (b0 - w0) * 0.17])))
        for leg, (a, b) in (("left", ("bottom_left_in", "bottom_left_out")),
                            ("right", ("bottom_right_in", "bottom_right_out"))):
            w0 = wl if leg == "left" else wr
            top = (w0 + cr) / 2
            details.append(("crease", np.array([top, (p[a] + p[b]) / 2])))
    return _Outline(parts, details, centre)


# --- 3. painting -------------------------------------------------------------------------------

_SKIN = np.array([[233, 196, 170], [214, 170, 140], [180, 130, 100], [140, 95, 70], [245, 215, 195]], float)
_HAIR = np.array([[30, 22, 18], [60, 40, 25], [110, 75, 45], [20, 20, 22], [170, 130, 80]], float)


def _colour(rng: np.random.Generator, sat=(0.1, 0.9), val=(0.15, 0.95)) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), int(255 * rng.uniform(*sat)), int(255 * rng.uniform(*val))]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


def _tup(c) -> tuple[int, int, int]:
    """An RGB colour as the int tuple cv2 wants, clipped to 0..255."""
    return tuple(min(255, max(0, int(v))) for v in c[:3])


def _pts(poly: np.ndarray) -> np.ndarray:
    """Float pixel polygon -> int32 points with 4 fractional bits (cv2 `shift=4`)."""
    return np.rint(np.asarray(poly) * 16).astype(np.int32).reshape(-1, 1, 2)


def _background(rng: np.random.Generator, H: int, W: int, base: np.ndarray) -> np.ndarray:
    """A wall/floor backdrop with a gradient and some clutter."""
    img = np.empty((H, W, 3), np.uint8)
    top, bottom = base, base * rng.uniform(0.7, 1.2) + rng.normal(0, 12, 3)
    ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    img[:] = np.clip(top[None, :] * (1 - ramp) + bottom[None, :] * ramp, 0, 255).astype(np.uint8)[:, None, :]
    if rng.random() < 0.4:  # floor line
        y = int(H * rng.uniform(0.55, 0.9))
        shift = tuple(float(v) for v in rng.integers(-40, 40, 3)) + (0.0,)
        img[y:] = cv2.add(img[y:], shift)  # saturating
    for _ in range(rng.integers(0, 6)):
        col = _tup(base * rng.uniform(0.6, 1.3) + rng.normal(0, 25, 3))
        kind = rng.integers(0, 3)
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        r = int(rng.uniform(0.04, 0.25) * min(H, W))
        if kind == 0:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r), col, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r // 2, col, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (int(rng.integers(0, W)), int(rng.integers(0, H))), col,
                     int(rng.integers(1, 8)), cv2.LINE_AA)
    return img


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, angle: float,
             low_contrast: bool) -> np.ndarray:
    """A garment fabric patch: solid, stripes, checks or print, in RGB uint8."""
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = _tup(base)
    kind = rng.choice(["solid", "stripes", "checks", "print", "denim"], p=[0.35, 0.2, 0.15, 0.15, 0.15])
    if low_contrast:
        kind = "solid"
    second = base * rng.uniform(0.4, 0.8) if rng.random() < 0.5 else _colour(rng)
    period = float(rng.uniform(6, 30))
    diag = int(math.hypot(h, w)) + 2
    cx, cy = w / 2, h / 2

    def stripes(theta: float, colour, thick: float) -> None:
        d = np.array([math.cos(theta), math.sin(theta)])
        nrm = np.array([-d[1], d[0]])
        offs = np.arange(-diag / 2, diag / 2, period)
        a = np.array([cx, cy]) + offs[:, None] * nrm - d * diag / 2
        b = a + d * diag
        col = _tup(colour)
        t = max(1, int(thick))
        for p0, p1 in zip(a, b):
            cv2.line(tex, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), col, t)

    if kind == "stripes":
        stripes(angle + rng.choice([0.0, math.pi / 2]), second, period * rng.uniform(0.2, 0.5))
    elif kind == "checks":
        stripes(angle, second, period * 0.3)
        stripes(angle + math.pi / 2, base * 0.5 + second * 0.5, period * 0.3)
    elif kind == "print":
        k = int(min(400, h * w / (period * period) * 0.6))
        xs, ys = rng.integers(0, max(w, 1), k), rng.integers(0, max(h, 1), k)
        rs = rng.integers(1, max(2, int(period / 3)), k)
        cols = [_tup(second), _tup(_colour(rng)), _tup(base * 1.3)]
        which = rng.integers(0, 3, k)
        for x, y, r, c in zip(xs, ys, rs, which):
            cv2.circle(tex, (int(x), int(y)), int(r), cols[c], -1, cv2.LINE_AA)
    elif kind == "denim":
        small = rng.normal(0, 14, (max(h // 2, 1), max(w // 2, 1), 1)).astype(np.float32)
        noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        tex[:] = np.clip(tex.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)
    return tex


def _shading(rng: np.random.Generator, h: int, w: int, folds: list[tuple[tuple[int, int], tuple[int, int]]],
             strength: float) -> np.ndarray:
    """A smooth (h, w) gain map: low-frequency light variation plus darker folds."""
    sh, sw = max(h // 4, 2), max(w // 4, 2)
    coarse = rng.normal(0, 0.08 * strength, (4, 4)).astype(np.float32)
    gain = cv2.resize(coarse, (sw, sh), interpolation=cv2.INTER_CUBIC) + 1.0
    for a, b in folds:
        cv2.line(gain, (a[0] // 4, a[1] // 4), (b[0] // 4, b[1] // 4),
                 float(1.0 - rng.uniform(0.12, 0.3) * strength), max(1, int(rng.integers(1, 3))))
    gain = cv2.GaussianBlur(gain, (0, 0), 1.5)
    return cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)


def _capsule(canvas: np.ndarray, mask: np.ndarray | None, a, b, width: int, colour) -> None:
    """A thick round-capped segment (a limb) on the image, and on `mask` when given."""
    a, b = (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))
    cv2.line(canvas, a, b, colour, width, cv2.LINE_AA)
    if mask is not None:
        cv2.line(mask, a, b, 1, width, cv2.LINE_8)


def _person(rng: np.random.Generator, img: np.ndarray, category: str, P: np.ndarray, scale: float) -> None:
    """Body parts around the garment (drawn behind it): neck and head, hands, legs, other clothes."""
    skin = _tup(_SKIN[rng.integers(len(_SKIN))])
    w = max(2, int(scale * rng.uniform(0.06, 0.09)))
    if category in _TOPS:
        nl, nr = P[_K["neckline_left"]], P[_K["neckline_right"]]
        sl, sr = P[_K["shoulder_left"]], P[_K["shoulder_right"]]
        up = (nl + nr) / 2
        body_dir = ((P[_K["armpit_left"]] + P[_K["armpit_right"]]) / 2 - (sl + sr) / 2)
        body_dir = body_dir / max(np.hypot(*body_dir), 1e-6)
        neck_w = max(2, int(np.hypot(*(nr - nl)) * 0.6))
        head = up - body_dir * neck_w * 2.2
        _capsule(img, None, up + body_dir * scale * 0.03, head, neck_w, skin)
        cv2.ellipse(img, (int(head[0]), int(head[1])), (int(neck_w * 1.05), int(neck_w * 1.35)),
                    float(np.degrees(np.arctan2(body_dir[0], -body_dir[1]))), 0, 360, skin, -1, cv2.LINE_AA)
        for side in ("left", "right"):
            o, i = P[_K[f"cuff_{side}_out"]], P[_K[f"cuff_{side}_in"]]
            s = P[_K[f"shoulder_{side}"]]
            mid = (o + i) / 2
            d = mid - s
            d = d / max(np.hypot(*d), 1e-6)
            _capsule(img, None, mid - d * 2, mid + d * scale * rng.uniform(0.08, 0.3),
                     max(2, int(np.hypot(*(o - i)) * 0.7)), skin)
        bottom = (P[_K["hemline_left"]] + P[_K["hemline_right"]]) / 2 if category == "dress" else \
            (P[_K["top_hem_left"]] + P[_K["top_hem_right"]]) / 2
        if rng.random() < 0.6:
            lower = _tup(_colour(rng)) if category != "dress" else skin
            for off in (-0.07, 0.07):
                a = bottom + np.array([off * scale, -0.05 * scale]) * 1.0
                _capsule(img, None, a, a + body_dir * scale * 0.6, int(w * 1.6), lower)
    else:
        wl, wr = P[_K["waistband_left"]], P[_K["waistband_right"]]
        top = (wl + wr) / 2
        width = max(3, int(np.hypot(*(wr - wl))))
        torso = _tup(_colour(rng))
        _capsule(img, None, top + np.array([0, scale * 0.05]), top - np.array([0, scale * 0.5]), width, torso)
        if category == "skirt":
            hem = (P[_K["hemline_left"]] + P[_K["hemline_right"]]) / 2
            for off in (-0.25, 0.25):
                a = hem + (wr - wl) * off
                _capsule(img, None, a - np.array([0, 0.1 * scale]), a + np.array([0, 0.6 * scale]), w, skin)
        else:
            for side in ("left", "right"):
                m = (P[_K[f"bottom_{side}_in"]] + P[_K[f"bottom_{side}_out"]]) / 2
                _capsule(img, None, m, m + np.array([0, 0.08 * scale]), w, skin)
                cv2.ellipse(img, (int(m[0]), int(m[1] + 0.1 * scale)), (int(w * 1.4), int(w * 0.6)), 0, 0, 360,
                            _tup(_colour(rng, val=(0.05, 0.5))), -1, cv2.LINE_AA)


def _distractor(rng: np.random.Generator, img: np.ndarray, H: int, W: int) -> None:
    """A partial garment-like shape of another piece of clothing, mostly off-frame."""
    cat = CATEGORIES[rng.integers(len(CATEGORIES))]
    K = canonical_keypoints(rng, cat, 1)[0]
    present = ~np.isnan(K[:, 0])
    s = rng.uniform(0.3, 0.8) * H / max(np.nanmax(K[:, 1]) - np.nanmin(K[:, 1]), 1e-6)
    edge = rng.integers(0, 4)
    cx = (-0.05 * W, W * 1.05, rng.uniform(0, W), rng.uniform(0, W))[edge]
    cy = (rng.uniform(0, H), rng.uniform(0, H), -0.05 * H, H * 1.05)[edge]
    P = np.where(present[:, None], (K - np.nanmean(K, axis=0)) * s + [cx, cy], np.nan)
    style = _style(rng)
    out = _outline(cat, np.nan_to_num(P, nan=0.0), style)
    col = _tup(_colour(rng))
    edge_col = _tup(np.array(col, float) * 0.6)
    for part in out.parts:
        cv2.fillPoly(img, [_pts(part)], col, cv2.LINE_AA, shift=4)
        cv2.polylines(img, [_pts(part)], True, edge_col, 1, cv2.LINE_AA, shift=4)


def _style(rng: np.random.Generator) -> dict:
    return {
        "side_bulge": float(rng.uniform(-0.03, 0.05)),
        "hem_bulge": float(rng.uniform(0.0, 0.08)),
        "v_depth": float(rng.uniform(0.3, 0.95)),
        "v_neck": bool(rng.random() < 0.3),
        "sleeves_front": bool(rng.random() < 0.8),
        "band": float(rng.uniform(0.06, 0.14)),
        "pleats": int(rng.integers(0, 6)),
        "placket": bool(rng.random() < 0.5),
    }


def _paint_garment(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, outline: _Outline,
                   P: np.ndarray, scale: float, rot: float, base: np.ndarray, low_contrast: bool) -> None:
    """Label the garment's parts in `mask` and paint them on `img`: fabric, shading, seams, trims."""
    lw = max(1, int(scale / 150))
    # Part labels back to front: later parts (and their edges, label 255) cover earlier ones,
    # so a sleeve in front hides the body's edge under it. The mask is every labelled pixel.
    for i, part in enumerate(outline.parts):
        cv2.fillPoly(mask, [_pts(part)], i + 1, cv2.LINE_8, shift=4)
        cv2.polylines(mask, [_pts(part)], True, 255, lw, cv2.LINE_8, shift=4)
    # the rounded keypoint pixel is a polygon vertex, hence labelled; stamp it to be sure
    present = P[:, 0] >= 0
    xs, ys = P[present, 0].astype(int), P[present, 1].astype(int)
    mask[ys, xs] = np.maximum(mask[ys, xs], 1)
    bx, by, bw, bh = cv2.boundingRect(mask)
    if bw == 0 or bh == 0:
        return
    x0, x1, y0, y1 = bx, bx + bw, by, by + bh
    h, w = int(y1 - y0), int(x1 - x0)
    tex = _texture(rng, h, w, base, rot, low_contrast)
    folds = []
    for _ in range(rng.integers(1, 5)):
        a = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ang = rot + math.pi / 2 + rng.normal(0, 0.4)
        ln = rng.uniform(0.1, 0.4) * scale
        folds.append((a, (int(a[0] + ln * math.cos(ang)), int(a[1] + ln * math.sin(ang)))))
    gain = _shading(rng, h, w, folds, 0.5 if low_contrast else 1.0)
    lut = np.ones(256, np.float32)
    lut[1:len(outline.parts) + 1] = rng.uniform(0.84, 0.94, len(outline.parts)) if not low_contrast else 0.97
    lut[1] = 1.0  # the body (or the first leg) keeps the fabric's own brightness
    lut[255] = 0.9 if low_contrast else rng.uniform(0.45, 0.7)
    labels = mask[y0:y1, x0:x1]
    gain *= lut[labels]
    shaded = np.clip(tex.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)
    region = img[y0:y1, x0:x1]
    np.copyto(region, shaded, where=(labels > 0)[..., None])
    dark = _tup(base * (0.85 if low_contrast else rng.uniform(0.45, 0.7)))
    trim = _tup(base * 0.6 if rng.random() < 0.6 else _colour(rng))
    if low_contrast:
        trim = dark
    for kind, pts in outline.details:
        if kind == "shirt":
            continue
        if kind == "band":
            band = np.zeros((h, w), np.uint8)
            cv2.fillPoly(band, [_pts(pts - (x0, y0))], 1, cv2.LINE_8, shift=4)
            sel = (band > 0) & (labels > 0)
            region[sel] = (region[sel] * 0.82).astype(np.uint8)
            cv2.polylines(img, [_pts(pts[2:])], False, dark, lw, cv2.LINE_AA, shift=4)
        elif kind in ("trim", "belt"):
            cv2.polylines(img, [_pts(pts)], False, trim, lw * (3 if kind == "belt" else 2), cv2.LINE_AA, shift=4)
        elif kind == "cuff":
            cv2.polylines(img, [_pts(pts)], False, dark, lw * 2, cv2.LINE_AA, shift=4)
        elif kind == "lapel":
            lap = _tup(base * 0.8)
            cv2.fillPoly(img, [_pts(pts)], lap, cv2.LINE_AA, shift=4)
            cv2.polylines(img, [_pts(pts)], True, dark, lw, cv2.LINE_AA, shift=4)
        elif kind == "opening":
            cv2.polylines(img, [_pts(pts)], False, dark, lw + 1, cv2.LINE_AA, shift=4)
            a, b = pts
            for f in np.linspace(0.1, 0.8, int(rng.integers(0, 5))):
                c = a + (b - a) * f
                cv2.circle(img, (int(c[0] + 3 * lw), int(c[1])), 2 * lw + 1, dark, -1, cv2.LINE_AA)
        elif kind == "pocket":
            cv2.polylines(img, [_pts(pts)], True, dark, lw, cv2.LINE_AA, shift=4)
        else:  # pleat, fly, crease
            cv2.polylines(img, [_pts(pts)], False, dark, 1, cv2.LINE_AA, shift=4)


def _paint_shirt(img: np.ndarray, outline: _Outline, colour) -> None:
    for kind, pts in outline.details:
        if kind == "shirt":
            cv2.fillPoly(img, [_pts(pts)], colour, cv2.LINE_AA, shift=4)


# --- occluders ---------------------------------------------------------------------------------

# Which occluder hides which keypoint (as in FashionAI photos: hair over necklines, arms over
# armpits, hands and tops over waistbands, bags, hands and folds of the fabric over hems and cuffs).
_OCCLUDER_FOR = {
    "neckline": ("hair", "hair", "hand"), "center_front": ("hair", "hand"),
    "shoulder": ("hair", "bag_strap"), "armpit": ("arm", "arm", "hair", "bag"),
    "waistline": ("hand", "bag", "fold"), "cuff": ("bag", "hand", "object", "fold"),
    "top_hem": ("hand", "bag", "object", "fold"), "waistband": ("top", "top", "top", "hand"),
    "hemline": ("hand", "object", "fold"), "crotch": ("hand", "object", "fold"), "bottom": ("object", "hand", "fold"),
}
# the occluder covers spill over onto neighbours, so aim at fewer points than the target rate
_AIM = 0.9
# A top hanging over the waistband usually hides both ends at once (val.csv: 28 % of trouser
# waistband points occluded, yet only 33 % of rows have any), so aim at waistbands less often.
_AIM_SCALE = np.ones(NUM_KEYPOINTS)
_AIM_SCALE[[_K["waistband_left"], _K["waistband_right"]]] = 0.65


def _occluders(rng: np.random.Generator, img: np.ndarray, category: int, P: np.ndarray,
               present: np.ndarray, scale: float, fabric: np.ndarray) -> np.ndarray:
    """Draw occluders aimed at keypoints with the real per-keypoint rates; return their mask."""
    H, W = img.shape[:2]
    occ = np.zeros((H, W), np.uint8)
    aim = present & (rng.random(NUM_KEYPOINTS) < OCCLUSION_RATES[category] * _AIM * _AIM_SCALE)
    cat = CATEGORIES[category]
    for k in np.flatnonzero(aim):
        x, y = int(P[k, 0]), int(P[k, 1])
        if occ[y, x]:
            continue
        name = schema.KEYPOINTS[k]
        group = next(g for g in _OCCLUDER_FOR if name.startswith(g))
        kind = _OCCLUDER_FOR[group][rng.integers(len(_OCCLUDER_FOR[group]))]
        p = np.array([x, y], float)
        if kind == "hair":
            col = _tup(_HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2))
            ax = (max(3, int(scale * rng.uniform(0.04, 0.09))), max(4, int(scale * rng.uniform(0.12, 0.3))))
            c = p + rng.uniform(-0.4, 0.4, 2) * np.array([ax[0], ax[1] * 0.5])
            ang = float(rng.normal(0, 15))
            cv2.ellipse(img, (int(c[0]), int(c[1])), ax, ang, 0, 360, col, -1, cv2.LINE_AA)
            cv2.ellipse(occ, (int(c[0]), int(c[1])), ax, ang, 0, 360, 1, -1, cv2.LINE_8)
            strand = _tup(np.array(col, float) * 1.4 + 10)
            for _ in range(3):
                o = rng.uniform(-0.6, 0.6) * ax[0]
                a = (int(c[0] + o), int(c[1] - ax[1] * 0.7))
                b = (int(c[0] + o * 0.8), int(c[1] + ax[1] * 0.7))
                cv2.line(img, a, b, strand, 1, cv2.LINE_AA)
        elif kind in ("arm", "hand"):
            col = _tup(_SKIN[rng.integers(len(_SKIN))])
            width = max(3, int(scale * (rng.uniform(0.06, 0.1) if kind == "arm" else rng.uniform(0.05, 0.08))))
            ang = rng.uniform(0, 2 * math.pi) if kind == "hand" else math.pi / 2 + rng.normal(0, 0.5)
            d = np.array([math.cos(ang), math.sin(ang)])
            length = scale * (rng.uniform(0.25, 0.5) if kind == "arm" else rng.uniform(0.08, 0.15))
            t = rng.uniform(0.2, 0.8)
            a, b = p - d * length * t, p + d * length * (1 - t)
            _capsule(img, occ, a, b, width, col)
            end = b
            cv2.circle(img, (int(end[0]), int(end[1])), int(width * 0.65), col, -1, cv2.LINE_AA)
            cv2.circle(occ, (int(end[0]), int(end[1])), int(width * 0.65), 1, -1, cv2.LINE_8)
        elif kind in ("bag", "object"):
            col = _tup(_colour(rng, sat=(0.2, 0.9), val=(0.1, 0.8)))
            sz = scale * (rng.uniform(0.12, 0.25) if kind == "bag" else rng.uniform(0.05, 0.1))
            wh = np.array([sz * rng.uniform(0.8, 1.4), sz * rng.uniform(0.6, 1.0)])
            c = p + rng.uniform(-0.3, 0.3, 2) * wh
            box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(wh[0]), float(wh[1])), float(rng.normal(0, 15))))
            cv2.fillPoly(img, [_pts(box)], col, cv2.LINE_AA, shift=4)
            cv2.fillPoly(occ, [_pts(box)], 1, cv2.LINE_8, shift=4)
            cv2.polylines(img, [_pts(box)], True, _tup(np.array(col, float) * 0.6), 1, cv2.LINE_AA, shift=4)
            if kind == "bag":
                top = c - np.array([0, wh[1] / 2])
                cv2.ellipse(img, (int(top[0]), int(top[1])), (int(wh[0] * 0.35), int(wh[1] * 0.5)), 0, 180, 360,
                            _tup(np.array(col, float) * 0.7), max(1, int(sz / 20)), cv2.LINE_AA)
        elif kind == "fold":
            # a flap of the garment's own fabric turned over the point (a rolled cuff, a hem fold)
            centre = P[CATEGORY_MASK[category] & present].mean(axis=0)
            inward = centre - p
            inward /= max(np.hypot(*inward), 1e-6)
            across = np.array([-inward[1], inward[0]])
            r = scale * rng.uniform(0.04, 0.08)
            tip = p + inward * r * rng.uniform(1.2, 2.0)
            poly = np.array([p - across * r - inward * r * 0.4, p + across * r - inward * r * 0.4,
                             tip + across * r * 0.4, tip - across * r * 0.4])
            shade = fabric * rng.uniform(0.6, 0.8)
            cv2.fillPoly(img, [_pts(poly)], _tup(shade), cv2.LINE_AA, shift=4)
            cv2.fillPoly(occ, [_pts(poly)], 1, cv2.LINE_8, shift=4)
            cv2.polylines(img, [_pts(poly)], True, _tup(shade * 0.7), 1, cv2.LINE_AA, shift=4)
        elif kind == "bag_strap":
            col = _tup(_colour(rng, val=(0.1, 0.6)))
            d = np.array([rng.normal(0.3, 0.2), 1.0])
            d /= np.hypot(*d)
            width = max(3, int(scale * rng.uniform(0.03, 0.05)))
            _capsule(img, occ, p - d * scale * 0.3, p + d * scale * 0.4, width, col)
        else:  # "top": the hem of an upper garment hanging over the waistband
            wl, wr = P[_K["waistband_left"]], P[_K["waistband_right"]]
            if cat not in ("skirt", "trousers") or wl[0] < 0 or wr[0] < 0:
                continue
            col = _tup(_colour(rng))
            drop = scale * rng.uniform(0.04, 0.12)
            d = (wr - wl)
            nrm = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6)
            centre = P[CATEGORY_MASK[category] & present].mean(axis=0)
            if np.dot(nrm, centre - wl) < 0:
                nrm = -nrm
            # cover one or both waistband ends
            both = rng.random() < 0.85
            a = wl - d * 0.15 if (both or k == _K["waistband_left"]) else wl + d * 0.55
            b = wr + d * 0.15 if (both or k == _K["waistband_right"]) else wl + d * 0.45
            poly = np.array([a - nrm * scale * 0.3, b - nrm * scale * 0.3, b + nrm * drop, a + nrm * drop])
            cv2.fillPoly(img, [_pts(poly)], col, cv2.LINE_AA, shift=4)
            cv2.fillPoly(occ, [_pts(poly)], 1, cv2.LINE_8, shift=4)
            cv2.line(img, (int(poly[2][0]), int(poly[2][1])), (int(poly[3][0]), int(poly[3][1])),
                     _tup(np.array(col, float) * 0.6), 1, cv2.LINE_AA)
    if rng.random() < 0.15:  # an unaimed object that may hide anything
        col = _tup(_colour(rng))
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        r = max(2, int(scale * rng.uniform(0.03, 0.08)))
        cv2.circle(img, c, r, col, -1, cv2.LINE_AA)
        cv2.circle(occ, c, r, 1, -1, cv2.LINE_8)
    return occ


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting gradient, sensor noise and blur over the whole image."""
    H, W = img.shape[:2]
    gx = np.linspace(-0.5, 0.5, W, dtype=np.float32) * np.float32(rng.uniform(-0.35, 0.35))
    gy = np.linspace(-0.5, 0.5, H, dtype=np.float32) * np.float32(rng.uniform(-0.35, 0.35))
    gain = (np.float32(rng.uniform(0.8, 1.15)) + gx[None, :] + gy[:, None])
    # multiplicative sensor noise, in 2x2 blocks (cheap, and JPEG blurs it anyway)
    small = rng.normal(0, rng.uniform(0.005, 0.025), (max(H // 2, 1), max(W // 2, 1))).astype(np.float32)
    gain += cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    img = cv2.multiply(img, cv2.merge((gain, gain, gain)), dtype=cv2.CV_8U)  # saturating
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.3)))
    return img


# --- samples -----------------------------------------------------------------------------------


def garment_geometry(rng: np.random.Generator, category: int, n: int, H: np.ndarray, W: np.ndarray,
              hard: np.ndarray, layouts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Placed, rounded keypoints (n, 24, 2) and presence (n, 24) for n garments of one category."""
    name = CATEGORIES[category]
    if layouts is not None and len(layouts):
        K = layouts[rng.integers(0, len(layouts), n)].astype(np.float64)
        K = K + rng.normal(0, 0.012, K.shape)
        K[..., 0] *= rng.uniform(0.85, 1.15, n)[:, None]
    else:
        K = canonical_keypoints(rng, category, n)
    crossed = hard == "crossed"
    if crossed.any():
        K[crossed] = _cross(rng, K[crossed], name)
    P, present = _place(rng, K, name, H, W, hard)
    return P, present


def render_sample(rng: np.random.Generator, category: int | str, size: int | tuple[int, int] = (512, 512),
                  hard_kind: str | None = None, layout: np.ndarray | None = None) -> Sample:
    """Render one garment image. `size` is (H, W); `layout` is an optional (24, 2) canonical layout."""
    c = category_code_of(category)
    name = CATEGORIES[c]
    H, W = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if hard_kind is not None and hard_kind not in hard_kinds_for(c):
        raise ValueError(f"hard kind {hard_kind!r} is not possible for {name}; "
                         f"expected one of {', '.join(hard_kinds_for(c))}")
    if H < 32 or W < 32:
        raise ValueError(f"image size {H}x{W} is too small (at least 32x32)")
    hard = np.array([hard_kind or ""], dtype=object)
    layouts = None
    if layout is not None:
        layouts = np.array(layout, np.float64)
        if layouts.shape != (NUM_KEYPOINTS, 2) or not np.isfinite(layouts[CATEGORY_MASK[c]]).all():
            raise ValueError(f"layout must be ({NUM_KEYPOINTS}, 2) with every {name} keypoint finite "
                             f"(as `load_layouts` returns), got shape {layouts.shape}")
        layouts[~CATEGORY_MASK[c]] = np.nan
        layouts = layouts[None]
    P, present = garment_geometry(rng, c, 1, np.array([H]), np.array([W]), hard, layouts)
    P, present = P[0], present[0]
    low = hard_kind == "low_contrast"
    bg = _colour(rng, sat=(0.0, 0.5), val=(0.35, 0.98))
    base = bg + rng.choice([-1, 1], 3) * rng.uniform(6, 16, 3) if low else _colour(rng)
    img = _background(rng, H, W, bg)
    if not low and rng.random() < 0.4:
        _distractor(rng, img, H, W)
    # the outline is built from all category points, including cut ones outside the frame
    style = _style(rng)
    Pfull = np.nan_to_num(P, nan=0.0)  # cut-off points stay in place outside the frame
    lo, hi = P[CATEGORY_MASK[c]].min(axis=0), P[CATEGORY_MASK[c]].max(axis=0)
    scale = float(max(hi[1] - lo[1], hi[0] - lo[0], 8.0))
    rot = float(np.arctan2(*(_axis(name, P, present)[::-1])))
    outline = _outline(name, Pfull, style)
    if rng.random() < 0.6:
        _person(rng, img, name, Pfull, scale)
    if name == "outwear":
        _paint_shirt(img, outline, _tup(_colour(rng)))
    mask = np.zeros((H, W), np.uint8)
    _paint_garment(rng, img, mask, outline, np.where(present[:, None], Pfull, -1), scale, rot, base, low)
    occ = _occluders(rng, img, c, np.where(present[:, None], Pfull, -1), present, scale, base)
    img = _finish(rng, img)
    coords = np.where(present[:, None], Pfull, -1).astype(np.float32)
    xs, ys = np.clip(coords[:, 0], 0, W - 1).astype(int), np.clip(coords[:, 1], 0, H - 1).astype(int)
    vis = np.where(present, np.where(occ[ys, xs] > 0, 0, 1), -1).astype(np.int8)
    return Sample(img, c, coords, vis, mask.astype(bool), occ.astype(bool), hard_kind)


def _axis(name: str, P: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The garment's left-to-right direction (for aligning stripes)."""
    a, b = schema.NORMALIZER_PAIRS[CATEGORIES.index(name)]
    if present[a] and present[b]:
        return P[b] - P[a]
    return np.array([1.0, 0.0])
