"""Random crops on the cached grid: a batch's crop boxes resample the stored patch grid."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from rocket_core.contracts import TeacherInfo
from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec

# --- crop on the cached grid --------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherView:
    """Where a dataset image lands on the teacher's patch grid (`rocket_core.vision.resize_for_teacher`).

    Per axis, a normalised image coordinate v maps to teacher pixel `v * new + offset`.
    """

    image_hw: tuple[int, int]
    size: int
    patch: int
    mode: str = "crop"

    @classmethod
    def of(cls, image_hw: Sequence[int], info: TeacherInfo, spec: TeacherSpec) -> TeacherView:
        size = info.image_size[1]
        return cls((int(image_hw[0]), int(image_hw[1])), size, size // info.patch_grid[1],
                   str(spec.options.get("resize", "crop")))

    def axes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """((new_h, offset_h, rows), (new_w, offset_w, cols)) of the teacher input."""
        h, w = self.image_hw
        size, patch = self.size, self.patch

        def round_to(value: float) -> int:
            return max(patch, round(value / patch) * patch)

        if self.mode == "crop" or w >= h:
            new_w, new_h = size, round_to(h * size / w)
        else:
            new_w, new_h = round_to(w * size / h), size
        if self.mode == "crop":
            top = (new_h - size) // 2 if new_h > size else 0
            return (new_h, -top, min(new_h, size) // patch), (new_w, 0, new_w // patch)
        dh, dw = size - new_h, size - new_w
        return (new_h, dh // 2, size // patch), (new_w, dw // 2, size // patch)


def is_full_box(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (...) bool: the box is the whole image."""
    full = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device, dtype=boxes.dtype)
    return (boxes == full).all(-1)


def crop_grids(grids: torch.Tensor, boxes: torch.Tensor, view: TeacherView) -> torch.Tensor:
    """(B, L, S, P, C) cached canonical-view grids + (B, S, 4) crop boxes -> the grids of the cropped views.

    The approximation: the teacher's features of a crop (resized back to full size) are taken to be the
    canonical view's features inside the box, bilinearly resampled to the full grid (patch centres of the
    cropped view mapped back through the box; edges clamp). Exact for full boxes, which are passed through
    untouched; for a 90 % crop on VGGT's 37x37 grid each output patch lies within ~0.5 patch of the source
    patches it interpolates, but the teacher never saw the crop, so its context (and global attention) is
    that of the full frame. Returns float32.
    """
    b, layers, frames, p, c = grids.shape
    (new_h, off_h, rows), (new_w, off_w, cols) = view.axes()
    if rows * cols != p:
        raise RocketError(f"cached grids have {p} patches but the teacher view gives {rows}x{cols}; rebuild the cache")
    grids = grids.float()
    boxes = boxes.to(grids.device, torch.float32).reshape(b * frames, 4)
    todo = (~is_full_box(boxes)).nonzero().flatten()
    if todo.numel() == 0:
        return grids
    x = grids.permute(0, 2, 1, 4, 3).reshape(b * frames, layers * c, rows, cols)  # a copy
    sel = boxes[todo]
    patch = view.patch
    i = (torch.arange(rows, device=grids.device, dtype=torch.float32) + 0.5) * patch
    j = (torch.arange(cols, device=grids.device, dtype=torch.float32) + 0.5) * patch
    # output teacher pixel p -> normalised coordinate in the crop -> in the full image -> cached teacher pixel
    ys = sel[:, 0:1] * new_h + sel[:, 2:3] * (i[None] - off_h) + off_h  # (n, rows)
    xs = sel[:, 1:2] * new_w + sel[:, 3:4] * (j[None] - off_w) + off_w  # (n, cols)
    gy = 2 * ys / (rows * patch) - 1
    gx = 2 * xs / (cols * patch) - 1
    sample_at = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (n, rows, cols, 2)
    x[todo] = F.grid_sample(x[todo], sample_at, mode="bilinear", padding_mode="border", align_corners=False)
    return x.reshape(b, frames, layers, c, p).permute(0, 2, 1, 4, 3)
