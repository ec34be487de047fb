"""One picture per teacher run: each input next to its predicted depth and confidence.

Meant as a sanity check of loaded weights: a real checkpoint gives depth that follows the scene's
geometry, random or mismatched weights give noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rocket_core.errors import RocketError


def load_images(paths: list[Path]) -> torch.Tensor:
    """(1, S, 3, H, W) in [0, 1] from image files of one common size."""
    from PIL import Image, UnidentifiedImageError

    frames = []
    for path in paths:
        try:
            with Image.open(path) as img:
                frames.append(torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1))
        except (FileNotFoundError, IsADirectoryError):
            raise RocketError(f"image '{path}' does not exist; check the path") from None
        except UnidentifiedImageError:
            raise RocketError(f"'{path}' is not an image file PIL can read") from None
    sizes = {tuple(f.shape[1:]) for f in frames}
    if len(sizes) > 1:
        listing = ", ".join(f"{p.name} {f.shape[2]}x{f.shape[1]}" for p, f in zip(paths, frames))
        raise RocketError(f"images differ in size ({listing}); give images of one size or preview them separately")
    return torch.stack(frames)[None]


def render(images: torch.Tensor, depth: torch.Tensor, conf: torch.Tensor, out: Path, title: str) -> None:
    """Rows = frames; columns = input, depth (per-frame colour range), confidence. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = images.shape[0]
    fig, axes = plt.subplots(s, 3, figsize=(9, 3 * s), squeeze=False)
    panels = (("input", None), ("depth", "turbo"), ("confidence", "magma"))
    for i in range(s):
        data = (images[i].clamp(0, 1).permute(1, 2, 0), depth[i], conf[i])
        for ax, (name, cmap), value in zip(axes[i], panels, data):
            shown = ax.imshow(value.float().cpu().numpy(), cmap=cmap)
            if cmap is not None:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"{name} {i}", fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
