"""Alignment math beyond the golden cases: masked-loss edge cases, JAX variants, the head's plumbing."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rocket_core.align.head import AlignmentHead
from rocket_core.align.loss import cosine_loss
from rocket_core.align.pooling import bilinear_pool, sincos_2d
from rocket_core.specs import ProjectorSpec
from rocket_plugins.projectors.builtin import IndependentProjector, RocketProjector, SharedProjector
from rocket_plugins.vla.paligemma.preprocess import align_mask as pi0_align_mask, downsample_padding_mask


def test_masked_loss_skips_empty_samples() -> None:
    pred, target = torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    loss = cosine_loss(pred, target, mask)
    cos = F.cosine_similarity(pred, target, dim=-1)
    expected = ((1 - cos[0, :2].mean()) + (1 - cos[2].mean())) / 2  # sample 1 left out, not averaged in
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(pred.grad[1] == 0) and pred.grad[0, :2].abs().sum() > 0 and torch.all(pred.grad[0, 2:] == 0)


def test_masked_loss_without_valid_tokens_is_zero_with_zero_grad() -> None:
    pred = torch.randn(2, 4, 8, requires_grad=True)
    loss = cosine_loss(pred, torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all() and torch.all(pred.grad == 0)


def test_jax_cosine_eps_differs_only_near_zero() -> None:
    pred, target = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    torch.testing.assert_close(cosine_loss(pred, target, eps=1e-8), cosine_loss(pred, target), atol=1e-6, rtol=0)
    zero = torch.zeros(1, 1, 8)
    assert cosine_loss(zero, zero, eps=1e-8).item() == 1.0  # x/(|x|+eps) is 0, so cos is 0 and loss 1


def test_tanh_gelu_and_eps_options_reach_the_projector() -> None:
    spec = ProjectorSpec(name="rocket", activation="gelu_tanh", layer_norm_eps=1e-6)
    proj = RocketProjector.build(2, 6, 4, spec, 1)[0][0]
    assert proj.approximate == "tanh" and proj.vlm_norm.eps == 1e-6
    x = torch.randn(2, 3, 6)
    h = F.gelu(F.linear(proj.vlm_norm(x), proj.fc1.weight[:1], proj.fc1.bias[:1]), approximate="tanh")
    torch.testing.assert_close(proj(x, 0), F.linear(h, proj.fc2.weight[:, :1], proj.fc2.bias))


def test_strategies_and_reference_state_dict_names() -> None:
    spec = ProjectorSpec(name="rocket", hidden_dim=10)
    rocket = RocketProjector.build(3, 6, 4, spec, ensemble_size=2)
    assert rocket.pair_widths() == [2, 6, 10] and rocket.shared
    assert sorted(k for k in rocket.state_dict() if k.endswith("fc1.weight")) == ["0.0.fc1.weight", "0.1.fc1.weight"]
    assert SharedProjector.build(3, 6, 4, spec, 1).pair_widths() == [10, 10, 10]
    independent = IndependentProjector.build(3, 6, 4, spec, 1)
    assert independent.pair_widths() == [10, 10, 10]
    assert {k.split(".")[0] for k in independent.state_dict()} == {"0", "1", "2"}
    quirk = IndependentProjector.build(3, 6, 4, spec.model_copy(update={"reference_width_quirk": True}), 1)
    assert quirk.pair_widths() == [2, 2, 2]


def test_head_matches_a_plain_per_pair_computation() -> None:
    bank = RocketProjector.build(3, 6, 4, ProjectorSpec(name="rocket", hidden_dim=8), ensemble_size=2)
    head = AlignmentHead(bank, num_vision_tokens=8, teacher_grid=(4, 4), teacher_image_hw=(56, 56))
    states = [torch.randn(2, 8, 6) for _ in range(3)]
    teacher = [torch.randn(2, 2, 16, 4) for _ in range(3)]
    mask = torch.rand(2, 8) > 0.3
    out = head(states, teacher, token_mask=mask)
    for i in range(3):
        target = bilinear_pool(teacher[i], (4, 4), 8, (56, 56))
        members = [cosine_loss(p(states[i], i), target, mask) for p in bank.pool(i)]
        torch.testing.assert_close(out.ensemble_losses[i], torch.stack(members))
    torch.testing.assert_close(out.loss, out.ensemble_losses.mean())


def test_pooled_pe_equals_pe_added_before_pooling() -> None:
    tokens = torch.randn(3, 2, 37 * 37, 16)
    pe = 0.1 * sincos_2d(16, (37, 37), (518, 518))
    frames = tokens.reshape(6, 37, 37, 16).permute(0, 3, 1, 2) + pe
    direct = F.interpolate(frames, size=(16, 16), mode="bilinear", align_corners=True)
    direct = direct.permute(0, 2, 3, 1).reshape(3, 512, 16)
    torch.testing.assert_close(bilinear_pool(tokens, (37, 37), 512, (518, 518)), direct, atol=1e-6, rtol=1e-6)


def test_pi0_masks_from_pixels() -> None:
    pixel = torch.ones(1, 2, 224, 224, dtype=torch.bool)
    pixel[0, 0, :112] = False  # top half of camera 0 is padding
    tokens = downsample_padding_mask(pixel, (16, 16))
    assert tokens.shape == (1, 512) and tokens[0, :128].sum() == 0 and tokens[0, 128:].all()
    mask = pi0_align_mask(torch.tensor([[True, False]]), tokens)
    assert mask[0, 128:256].all() and not mask[0, 256:].any()
