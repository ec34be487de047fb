"""PNG figures of profile results: heatmaps of layer x layer matrices, comparisons, panels.

Figures use matplotlib's object API (no pyplot state, no backend switch) and a fixed size in pixels
(`*_PX`, width x height), so the same kind of result always gives an image of the same size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100
HEATMAP_PX = (800, 680)
COMPARE_PX = (1800, 620)
PANELS_PX = (1400, 1200)
STEP_CURVES_PX = (600, 420)
ANNOTATE_MAX_CELLS = 150  # write the value into every cell up to this many cells


def _figure(px: tuple[int, int]) -> Figure:
    return Figure(figsize=(px[0] / DPI, px[1] / DPI), dpi=DPI)


def _save(fig: Figure, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(p)
    return p


def _ticks(ax: Any, labels: Sequence[int], axis: str) -> None:
    """Every label up to 40, else every k-th so they stay legible."""
    step = max(1, int(np.ceil(len(labels) / 40)))
    pos = list(range(0, len(labels), step))
    if axis == "x":
        ax.set_xticks(pos, [str(labels[i]) for i in pos], fontsize=8)
    else:
        ax.set_yticks(pos, [str(labels[i]) for i in pos], fontsize=8)


def draw_matrix(
    fig: Figure,
    ax: Any,
    matrix: dict[str, Any],
    title: str,
    vmin: float,
    vmax: float,
    cmap: str = "viridis",
    pairs: Sequence[tuple[int, int]] = (),
    best: Sequence[tuple[int, int]] = (),
) -> None:
    """One heatmap: `matrix` is a result matrix ({rows, cols, row_label, col_label, values}).

    `pairs` (row layer, col layer) get a white square outline (one-to-one matching), `best` a dot.
    """
    values = np.asarray(matrix["values"], dtype=float)
    rows, cols = list(matrix["rows"]), list(matrix["cols"])
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(matrix.get("col_label", ""), fontsize=9)
    ax.set_ylabel(matrix.get("row_label", ""), fontsize=9)
    _ticks(ax, cols, "x")
    _ticks(ax, rows, "y")
    if values.size <= ANNOTATE_MAX_CELLS:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                t = (v - vmin) / (vmax - vmin) if vmax > vmin else 0.5
                dark = t < 0.55 if cmap == "viridis" else abs(t - 0.5) > 0.3  # dark cell: white text
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    row_at, col_at = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    for r, c in pairs:
        ax.add_patch(Rectangle((col_at[c] - 0.5, row_at[r] - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2))
    for r, c in best:
        ax.plot(col_at[c] - 0.32, row_at[r] - 0.32, marker="o", markersize=4, color="red", linestyle="none")


def value_range(values: np.ndarray, kind_range: tuple[float, float] | None) -> tuple[float, float]:
    """The kind's natural range if given, else the data's (widened when constant)."""
    if kind_range is not None:
        return kind_range
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def step_curves(
    path: str | Path,
    series: Mapping[str, Sequence[tuple[int, float]]],
    title: str,
    ylabel: str,
    ylim: tuple[float, float],
    reference: tuple[str, float] | None = None,
) -> Path:
    """A metric against training step, one line per series (the benchmark scripts' curves); `reference` is a
    (label, value) dashed line such as chance. A legend only when there is more than one line."""
    fig = _figure(STEP_CURVES_PX)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in series.items():
        ax.plot([step for step, _ in points], [value for _, value in points], marker="o", label=name)
    if reference is not None:
        ax.axhline(reference[1], color="grey", linestyle="--", label=reference[0])
    ax.set(xlabel="training step", ylabel=ylabel, ylim=ylim, title=title)
    if len(series) + (reference is not None) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(
    path: str | Path,
    matrix: dict[str, Any],
    title: str,
    vrange: tuple[float, float] | None = None,
    cmap: str = "viridis",
    pairs: Sequence[tuple[int, int]] = (),
    best: Sequence[tuple[int, int]] = (),
    note: str | None = None,
) -> Path:
    fig = _figure(HEATMAP_PX)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = value_range(np.asarray(matrix["values"], dtype=float), vrange)
    draw_matrix(fig, ax, matrix, title, lo, hi, cmap, pairs, best)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, path)


def panels(
    path: str | Path,
    matrices: Sequence[tuple[dict[str, Any], str]],
    vrange: tuple[float, float] | None,
    cmap: str,
    bars: tuple[Sequence[str], Sequence[float], str] | None = None,
    title: str = "",
) -> Path:
    """Up to 3 heatmaps on one colour scale plus an optional bar chart (labels, values, title), 2 x 2."""
    fig = _figure(PANELS_PX)
    stacked = np.concatenate([np.asarray(m["values"], dtype=float).ravel() for m, _ in matrices])
    lo, hi = value_range(stacked, vrange)
    for k, (matrix, sub) in enumerate(matrices[:3]):
        draw_matrix(fig, fig.add_subplot(2, 2, k + 1), matrix, sub, lo, hi, cmap)
    if bars is not None:
        labels, values, sub = bars
        ax = fig.add_subplot(2, 2, 4)
        ax.bar(range(len(values)), values, color="tab:blue")
        ax.set_xticks(range(len(values)), list(labels), fontsize=8, rotation=45, ha="right")
        ax.set_ylim(min(0.0, min(values, default=0.0)) - 0.05, 1.05)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(sub, fontsize=10)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def compare(
    path: str | Path,
    a: dict[str, Any],
    b: dict[str, Any],
    labels: tuple[str, str],
    title: str,
    vrange: tuple[float, float] | None = None,
    cmap: str = "viridis",
) -> Path:
    """A and B on one colour scale (the union of their ranges) and A - B on a symmetric diverging scale."""
    va, vb = np.asarray(a["values"], dtype=float), np.asarray(b["values"], dtype=float)
    lo, hi = value_range(np.concatenate([va.ravel(), vb.ravel()]), vrange)
    diff = va - vb
    span = float(np.nanmax(np.abs(diff))) or 1e-6
    fig = _figure(COMPARE_PX)
    draw_matrix(fig, fig.add_subplot(1, 3, 1), a, labels[0], lo, hi, cmap)
    draw_matrix(fig, fig.add_subplot(1, 3, 2), b, labels[1], lo, hi, cmap)
    draw_matrix(fig, fig.add_subplot(1, 3, 3), {**a, "values": diff.tolist()}, f"{labels[0]} - {labels[1]}",
                -span, span, "RdBu_r")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
