"""pi0 / pi0.5 adapters on the tiny preset: info, masks, ROCKET loss backward, captured states, training modes."""
from __future__ import annotations

from typing import Sequence

import pytest
import torch

from rocket_core.align.head import AlignmentHead
from rocket_core.contracts import Batch
from rocket_core.errors import RocketError
from rocket_core.registry import load_registry
from rocket_core.specs import LoraSpec, ProjectorSpec, TrainingSpec, VLASpec
from rocket_plugins.projectors.builtin import RocketProjector
from rocket_plugins.vla.paligemma.config import LORA_LEAVES, TINY_ARCH
from rocket_plugins.vla.paligemma.policy import PaliGemmaFlowPolicy
from rocket_plugins.vla.paligemma.preprocess import pad_last, preprocess_images
from rocket_plugins.vla.paligemma.tokenizer import load_tokenizer
from rocket_plugins.vla.pi0 import Pi0Adapter
from rocket_plugins.vla.pi05 import Pi05Adapter

ADAPTERS = {"pi0": Pi0Adapter, "pi05": Pi05Adapter}
CAMERAS = 2


def _build(name: str, training: TrainingSpec | None = None, **options) -> PaliGemmaFlowPolicy:
    """Build, then `configure_training` as the trainer does (default: full fine-tuning)."""
    torch.manual_seed(0)
    options = {"num_cameras": CAMERAS, "max_token_len": 80, **options}  # short prompts keep the tests fast
    model = ADAPTERS[name].build(VLASpec(name=name, preset="tiny", options=options))
    model.configure_training(training or TrainingSpec(finetune="full"))
    return model


def _batch(state_dim: int = 8, action_dim: int = 7) -> Batch:
    """Non-square frames (so resizing pads), and sample 1 lacks its second camera."""
    g = torch.Generator().manual_seed(1)
    return Batch(
        images=torch.rand(2, CAMERAS, 3, 64, 48, generator=g),
        image_masks=torch.tensor([[True, True], [True, False]]),
        state=torch.rand(2, state_dim, generator=g) * 2 - 1,
        actions=torch.randn(2, TINY_ARCH.chunk_size, action_dim, generator=g),
        task=["pick up the black bowl", "open_the top drawer"],
    )


def _resolved(name: str, model: PaliGemmaFlowPolicy, layers: Sequence[int]) -> list[int]:
    return [ADAPTERS[name].resolve_layer(model.info, i) for i in layers]


@pytest.mark.parametrize("name", ADAPTERS)
def test_registered_and_paper_info_without_weights(name: str) -> None:
    registry = load_registry()
    adapter = registry.get("vla", name)
    info = adapter.info(VLASpec(name=name))
    assert (info.num_blocks, info.hidden_size, info.num_vision_tokens, info.num_images) == (18, 2048, 768, 3)
    assert info.default_layers == ((2, 3, 4, 5, 6, 7, 8, 9, 10, -1), (2, 4, 6, 8, 10, 12, 14, 16, 18, -1))
    assert [adapter.resolve_layer(info, i) for i in (0, 10, 18, -1)] == [0, 10, 18, 18]
    jax = adapter.info(VLASpec(name=name, options={"index_convention": "jax"}))
    assert (jax.max_layer_index, adapter.resolve_layer(jax, -1), jax.layer_offset) == (17, 17, 0)
    with pytest.raises(RocketError, match="out of range"):
        adapter.resolve_layer(jax, 18)
    assert adapter.info(VLASpec(name=name, options={"num_cameras": 2})).num_vision_tokens == 512
    # data facts: the model's chunk; any state/action dims up to the padded max (action_dim only if pinned)
    assert (info.chunk_size, info.action_dim, info.state_dim) == (50, None, None)
    assert info.normalization == {"pi0": "mean_std", "pi05": "quantile"}[name]
    pinned = adapter.info(VLASpec(name=name, preset="tiny", options={"chunk_size": 4, "action_dim": 7}))
    assert (pinned.chunk_size, pinned.action_dim, pinned.state_dim) == (4, 7, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"cameras": 2}, "pi0 options: cameras: Extra inputs"), ({"num_cameras": 4}, "num_cameras: .* less than or equal to 3"),
     ({"index_convention": "tf"}, "index_convention: Input should be 'pytorch' or 'jax'"),
     ({"finetune": "lora", "lora_rank_vlm": 8, "gradient_checkpointing": True},
      "moved to the training spec: finetune -> training.finetune, lora_rank_vlm -> training.lora.rank, "
      "gradient_checkpointing -> training.gradient_checkpointing")],
)
def test_bad_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(RocketError, match=message):
        Pi0Adapter.info(VLASpec(name="pi0", options=options))


def test_offline_without_weights_or_tokenizer_says_what_to_do() -> None:
    with pytest.raises(RocketError, match="rocket pull pi0"):
        Pi0Adapter.build(VLASpec(name="pi0", checkpoint="lerobot/pi0_base-not-cached"))
    with pytest.raises(RocketError, match="licence.*login"):
        load_tokenizer("google/paligemma-3b-pt-224-not-cached")


def test_preprocessing_slots_and_padding() -> None:
    batch = _batch()
    size = TINY_ARCH.vision["image_size"]
    pixels, masks, valid = preprocess_images(batch["images"], batch["image_masks"], 3, size)
    assert pixels.shape == (2, 3, 3, size, size) and pixels.min() >= -1 and pixels.max() <= 1
    assert masks.tolist() == [[True, True, False], [True, False, False]]
    assert (pixels[1, 1] == -1).all() and (pixels[:, 2] == -1).all()
    assert valid[0, 0, :, 0].sum() == 0 and valid[0, 0, :, size // 2].all()  # 48 wide -> padded columns
    with pytest.raises(RocketError, match="num_cameras"):
        preprocess_images(batch["images"], batch["image_masks"], 1, size)
    with pytest.raises(RocketError, match="at most"):
        pad_last(torch.zeros(2, 20), 16, "state")


@pytest.mark.parametrize("name", ADAPTERS)
def test_forward_backward_through_rocket_loss(name: str) -> None:
    """Masked pi0 layout through the core AlignmentHead with random teacher features; gradients reach both stacks."""
    model = _build(name).train()
    assert all(p.requires_grad for p in model.parameters()) and not any("lora_" in n for n, _ in model.named_parameters())
    layers = _resolved(name, model, model.info.default_layers[0])
    out = model.forward_align(_batch(), layers)
    v, width, grid = model.info.num_vision_tokens, model.info.hidden_size, model.arch.token_grid
    assert set(out.vision_states) == set(layers)
    assert all(s.shape == (2, v, width) for s in out.vision_states.values())
    per_camera = grid[0] * grid[1]
    # camera 2 of sample 1 is absent; the 48-px-wide frames leave padded token columns at both sides
    assert not out.token_mask[1, per_camera:].any()
    size = model.arch.vision["image_size"]
    resized_w = int(48 / (64 / size))
    left = (size - resized_w) // 2
    nearest = [j * size // grid[1] for j in range(grid[1])]  # source column of each token column
    cols = out.token_mask[0, :per_camera].view(grid).all(0)
    assert cols.tolist() == [left <= c < left + resized_w for c in nearest] and not cols.all()
    bank = RocketProjector.build(len(layers), width, 16, ProjectorSpec(name="rocket", hidden_dim=24), 1)
    head = AlignmentHead(bank, v, (4, 4), (56, 56))
    teacher = [torch.randn(2, CAMERAS, 16, 16) for _ in layers]
    align = head([out.vision_states[i] for i in layers], teacher, token_mask=out.token_mask)
    total = out.action_loss + 0.5 * align.loss
    assert torch.isfinite(total) and out.action_loss > 0 and 0 < align.loss < 2
    total.backward()
    vlm_grad = model.vlm.language_model.layers[0].self_attn.q_proj.weight.grad
    expert_grad = model.expert_layers[-1].mlp.down_proj.weight.grad
    vision_grad = model.vlm.vision_tower.embeddings.patch_embedding.weight.grad
    assert all(g is not None and g.abs().sum() > 0 for g in (vlm_grad, expert_grad, vision_grad))


@pytest.mark.parametrize("name", ADAPTERS)
def test_captured_states_equal_a_separate_vlm_pass(name: str) -> None:
    """The joint forward's prefix states equal transformers' output_hidden_states of the VLM on the same prefix."""
    model = _build(name).eval()
    info = model.info
    pixels, masks, _, tokens, token_mask, state = model._prepare(_batch())
    layers = list(range(info.max_layer_index + 1))
    actions = torch.zeros(2, model.arch.chunk_size, model.arch.max_action_dim)
    with torch.no_grad():
        joint = model.flow_forward(pixels, masks, tokens, token_mask, state, actions, layers)
        prefix, pad = model.embed_prefix(pixels, masks, tokens, token_mask)
        # PaliGemma-level call, as transformers' PI0 makes it: token_type_ids 0 = bidirectional prefix
        ref = model.vlm(
            inputs_embeds=prefix, attention_mask=pad.long(), position_ids=pad.long().cumsum(1) - 1,
            token_type_ids=torch.zeros_like(tokens[:, :1]).expand_as(pad), output_hidden_states=True,
        ).hidden_states
    assert len(ref) == info.max_layer_index + 1
    valid = pad[:, : info.num_vision_tokens, None]
    for idx in layers:
        expected = ref[idx][:, : info.num_vision_tokens]
        torch.testing.assert_close(joint.vision_states[idx] * valid, expected * valid, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ADAPTERS)
def test_predict_action(name: str) -> None:
    model = _build(name, action_dim=7).eval()
    noise = torch.randn(2, model.arch.chunk_size, model.arch.max_action_dim)
    batch = _batch()
    first = model.predict_action(batch, noise=noise)
    assert first.shape == (2, model.arch.chunk_size, 7) and torch.isfinite(first).all()
    assert torch.equal(first, model.predict_action(batch, noise=noise))
    assert not torch.equal(first, model.predict_action(batch, noise=noise + 1))


def test_pi05_state_enters_through_the_prompt() -> None:
    """pi0.5 has no state projection: changing the state changes the tokens, hence the loss."""
    model = _build("pi05").eval()
    batch = _batch()
    torch.manual_seed(3)
    loss_a = model.forward_align(batch, []).action_loss
    batch["state"] = -batch["state"]
    torch.manual_seed(3)
    assert model.forward_align(batch, []).action_loss != loss_a


@pytest.mark.parametrize("name", ADAPTERS)
@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_gradient_checkpointing_matches(name: str, finetune: str) -> None:
    """training.gradient_checkpointing recomputes joint and SigLIP layers: same loss, same gradients."""
    results = []
    for flag in (False, True):
        model = _build(name, TrainingSpec(finetune=finetune, gradient_checkpointing=flag, lora=LoraSpec(rank=4, alpha=8))).train()
        assert model.use_checkpoint == flag == model.vlm.vision_tower.is_activation_checkpointing
        calls: list[str] = []  # first ops of SigLIP layer 0 and joint layer 0 (a recompute stops once it has enough)
        for first in (model.vlm.vision_tower.encoder.layers[0].layer_norm1, model.vlm.language_model.layers[0].input_layernorm):
            first.register_forward_pre_hook(lambda m, _: calls.append(type(m).__name__))  # noqa: B023 (one list)
        torch.manual_seed(5)
        out = model.forward_align(_batch(), [1, 2])
        (out.action_loss + out.vision_states[1].square().mean()).backward()
        assert sorted(calls) == sorted(["LayerNorm", "GemmaRMSNorm"] * (2 if flag else 1))
        results.append((out.action_loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and any("language_model.layers.0." in n for n in grads_a)
    for name_, grad in grads_a.items():
        torch.testing.assert_close(grad, grads_b[name_], atol=1e-6, rtol=1e-5, msg=name_)


@pytest.mark.parametrize("name", ADAPTERS)
def test_lora_mode_trains_adapters_and_the_small_modules(name: str) -> None:
    """VLM LoRA from TrainingSpec.lora, expert LoRA from the lora_rank_expert option (alpha = rank)."""
    lora_spec = LoraSpec(rank=4, alpha=8, dropout=0.1)
    model = _build(name, TrainingSpec(finetune="lora", lora=lora_spec), lora_rank_expert=6).train()
    names = {n for n, _ in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in names if "lora_" in n}
    assert trainable == lora | {n for n in names if n.startswith(model.fully_trained_modules)}
    assert all(not n.startswith(model.fully_trained_modules) for n in lora)  # LoRA only on the Gemma stacks
    depth = model.arch.vlm.depth
    per_stack = depth * len(LORA_LEAVES) * 2  # A and B
    assert len(lora) == 2 * per_stack  # the VLM language model and the expert
    vlm_q = model.vlm.language_model.layers[0].self_attn.q_proj
    expert_q = model.expert_layers[0].self_attn.q_proj
    assert (vlm_q.r["default"], vlm_q.scaling["default"], vlm_q.lora_dropout["default"].p) == (4, 2.0, 0.1)
    assert (expert_q.r["default"], expert_q.scaling["default"]) == (6, 1.0)
    assert vlm_q.lora_A["default"].weight.shape[0] == 4 and expert_q.lora_A["default"].weight.shape[0] == 6
    assert not vlm_q.base_layer.weight.requires_grad and not expert_q.base_layer.weight.requires_grad
    with pytest.raises(RocketError, match="already applied"):
        model.configure_training(TrainingSpec(finetune="lora"))
    last = _resolved(name, model, [-1])[0]  # the final norm: every VLM block then feeds a loss
    out = model.forward_align(_batch(), [last])
    (out.action_loss + out.vision_states[last].mean()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)


def test_lerobot_config_gives_the_real_sizes() -> None:
    """A LeRobot config.json names variants (gemma_2b / gemma_300m); the policy fields come along."""
    from rocket_plugins.vla.paligemma.config import GEMMA_2B, GEMMA_300M, arch_from_config

    data = {"type": "pi05", "paligemma_variant": "gemma_2b", "action_expert_variant": "gemma_300m",
            "chunk_size": 10, "max_state_dim": 16, "max_action_dim": 16, "num_inference_steps": 4}
    arch = arch_from_config(data)
    assert (arch.vlm, arch.expert, arch.chunk_size, arch.max_action_dim, arch.num_steps) == (
        GEMMA_2B, GEMMA_300M, 10, 16, 4)
    assert arch.tokens_per_image == 256
    with pytest.raises(RocketError, match="unknown Gemma variant"):
        arch_from_config({**data, "paligemma_variant": "gemma_7b"})
