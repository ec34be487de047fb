"""Training curves of a run (`rocket plot RUN`): losses and learning rate from RUN/metrics.jsonl to a PNG.

matplotlib's object API renders without a display (Agg, as `plots`); nothing here imports torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rocket_core.errors import RocketError

METRICS = "metrics.jsonl"
CURVES_PX = (1200, 900)
LOSSES = ("action_loss", "align_loss")  # drawn first, then every per-pair `align/...` series
Series = dict[str, tuple[list[int], list[float]]]


def metrics_file(run: Path) -> Path:
    """RUN/metrics.jsonl (or RUN itself when it is the file)."""
    path = run / METRICS if run.is_dir() else run
    if not path.is_file():
        raise RocketError(f"no {METRICS} at '{path}'; give a run folder written by `rocket align`")
    return path


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """One record per step (a resumed run rewrites its steps: the last record of a step wins), in step order."""
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            by_step[int(record["step"])] = record
        except (ValueError, TypeError, KeyError):
            raise RocketError(f"'{path}' line {number} is not a metrics record (JSON with a step); "
                              "fix or remove that line") from None
    if not by_step:
        raise RocketError(f"'{path}' holds no steps yet; plot it once the run has logged a step")
    return [by_step[s] for s in sorted(by_step)]


def extract_series(records: list[dict[str, Any]]) -> Series:
    """name -> (steps, values) for the losses (total align and per pair) and `lr`; absent metrics are left out."""
    names = [*LOSSES, *sorted({k for r in records for k in r if k.startswith("align/")}), "lr"]
    out: Series = {}
    for name in names:
        points = [(r["step"], float(r[name])) for r in records if isinstance(r.get(name), (int, float))]
        if points:
            out[name] = ([s for s, _ in points], [v for _, v in points])
    return out


def plot_curves(run: Path, output: Path | None = None) -> Path:
    """Write the PNG (default RUN/metrics.png): losses on top, learning rate below; returns its path."""
    from matplotlib.figure import Figure

    from rocket_core.analysis.plots import DPI, _save

    path = metrics_file(run)
    series = extract_series(read_metrics(path))
    fig = Figure(figsize=(CURVES_PX[0] / DPI, CURVES_PX[1] / DPI), dpi=DPI)
    losses, lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for name, (steps, values) in series.items():
        if name == "lr":
            lr.plot(steps, values, color="black")
        else:
            per_pair = name.startswith("align/")
            losses.plot(steps, values, label=name, linewidth=0.8 if per_pair else 1.8, alpha=0.6 if per_pair else 1.0)
    losses.set(ylabel="loss", title=f"{path.parent.name}: training curves")
    losses.legend(fontsize=7, ncol=2)
    losses.grid(alpha=0.3)
    lr.set(xlabel="step", ylabel="learning rate")
    lr.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, output or path.parent / "metrics.png")
