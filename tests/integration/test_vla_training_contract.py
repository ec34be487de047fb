"""Every VLA plugin meets the training contract on a real batch of the bundled dataset.

What the trainer relies on, per VLA (tiny presets): build through the registry, `configure_training`
(LoRA from the TrainingSpec), a batch shaped by `info()` (chunk, normalisation), `forward_align` giving a
finite action loss and (B, V, D) vision states for the requested layers, and gradients exactly on the
parameters marked `requires_grad`, LoRA ones included.
"""
from __future__ import annotations

import pytest
import torch

from rocket_core.contracts import VLAModel
from rocket_core.data import DataSpec, VLADataset, collate_batch
from rocket_core.registry import get_registry
from rocket_core.specs import LoraSpec, TrainingSpec, VLASpec

VLAS = ("openvla", "pi0", "pi05")
BATCH = 2


@pytest.mark.parametrize("name", VLAS)
def test_lora_training_step_on_the_bundled_dataset(name: str) -> None:
    adapter = get_registry().get("vla", name)
    spec = VLASpec(name=name, preset="tiny")
    info = adapter.info(spec)
    torch.manual_seed(0)
    model = adapter.build(spec)
    assert isinstance(model, VLAModel) and model.info == info
    model.configure_training(TrainingSpec(finetune="lora", lora=LoraSpec(rank=4, alpha=4)))
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert lora and len(trainable) < sum(1 for _ in model.parameters())

    data = DataSpec(chunk_size=info.chunk_size or 8, normalization=info.normalization)
    dataset = VLADataset(data, seed=0)
    batch = collate_batch([dataset[i] for i in range(BATCH)])
    for key, want in (("actions", info.action_dim), ("state", info.state_dim)):  # the trainer's dataset check
        assert want is None or batch[key].shape[-1] == want

    layers = [adapter.resolve_layer(info, i) for i in info.default_layers[0]]  # the VLA side of the default map
    out = model.forward_align(batch, layers)
    assert out.action_loss.ndim == 0 and torch.isfinite(out.action_loss)
    assert set(out.vision_states) == set(layers)
    for states in out.vision_states.values():
        assert states.shape == (BATCH, info.num_vision_tokens, info.hidden_size) and torch.isfinite(states).all()
    if out.token_mask is not None:
        assert out.token_mask.shape == (BATCH, info.num_vision_tokens) and out.token_mask.dtype == torch.bool

    (out.action_loss + sum(s.float().square().mean() for s in out.vision_states.values())).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad <= trainable
    assert any(model.get_parameter(n).grad.abs().sum() > 0 for n in lora)
