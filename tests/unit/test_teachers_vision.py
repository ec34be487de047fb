"""Teacher preprocessing: VLA pixels back to RGB, and the reference's resize / crop / pad geometry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rocket_core.errors import RocketError
from rocket_core.vision import normalize, resize_for_teacher, unnormalize


def _bicubic(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)


def test_teachers_unnormalize_takes_the_imagenet_copy_of_stacked_pixels() -> None:
    rgb = torch.rand(2, 3, 16, 16)
    pixels = torch.cat((normalize(rgb), torch.randn(2, 3, 16, 16)), dim=1)  # OpenVLA: DINOv2 copy + SigLIP copy
    torch.testing.assert_close(unnormalize(pixels), rgb, rtol=0, atol=1e-6)
    assert unnormalize(pixels[None]).shape == (1, 2, 3, 16, 16)
    with pytest.raises(RocketError, match="at least 3 image channels"):
        unnormalize(torch.zeros(1, 2, 4, 4))


def test_teachers_crop_resizes_width_and_keeps_the_centre_rows() -> None:
    tall = torch.rand(2, 1, 3, 100, 50)
    out = resize_for_teacher(tall, 518, 14, "crop")
    new_h = round(100 * 518 / 50 / 14) * 14  # 1036
    top = (new_h - 518) // 2
    expected = _bicubic(tall.flatten(0, 1), new_h, 518)[:, :, top : top + 518]
    assert out.shape == (2, 1, 3, 518, 518)
    torch.testing.assert_close(out.flatten(0, 1), expected, rtol=0, atol=0)


def test_teachers_crop_keeps_wide_images_wide_and_square_inputs_at_size_untouched() -> None:
    wide = torch.rand(1, 2, 3, 56, 98)
    assert resize_for_teacher(wide, 70, 14, "crop").shape == (1, 2, 3, 42, 70)  # round(2.86) * 14 rows
    native = torch.rand(1, 1, 3, 70, 70)
    torch.testing.assert_close(resize_for_teacher(native, 70, 14), native, rtol=0, atol=0)


@pytest.mark.parametrize(("h", "w"), [(56, 98), (98, 56)])
def test_teachers_pad_fits_the_longer_side_and_pads_white(h: int, w: int) -> None:
    images = torch.rand(1, 1, 3, h, w)
    out = resize_for_teacher(images, 70, 14, "pad")[0, 0]
    assert out.shape == (3, 70, 70)
    short = 42  # round(56 * 70 / 98 / 14) * 14
    new_h, new_w = (short, 70) if w > h else (70, short)
    top, left = (70 - new_h) // 2, (70 - new_w) // 2
    inner = out[:, top : top + new_h, left : left + new_w]
    torch.testing.assert_close(inner, _bicubic(images[0], new_h, new_w)[0], rtol=0, atol=0)
    border = out.clone()
    border[:, top : top + new_h, left : left + new_w] = 1.0
    assert torch.equal(border, torch.ones_like(border))


def test_teachers_resize_does_not_clamp_bicubic_overshoot() -> None:
    edge = torch.zeros(1, 1, 3, 28, 28)
    edge[..., 14:] = 1.0
    out = resize_for_teacher(edge, 70, 14, "crop")
    assert out.min() < 0 and out.max() > 1  # the reference does not clamp either


def test_teachers_resize_rejects_bad_mode_and_shape() -> None:
    with pytest.raises(RocketError, match="unknown resize mode 'stretch'"):
        resize_for_teacher(torch.rand(1, 1, 3, 8, 8), 14, 14, "stretch")  # type: ignore[arg-type]
    with pytest.raises(RocketError, match=r"\(\.\.\., 3, H, W\)"):
        resize_for_teacher(torch.rand(1, 1, 4, 8, 8), 14, 14)
