"""The one model builder: plan (+ checkpoint) -> modules, trainable or frozen, for align, profile and serve.

Building in one place keeps three promises: the modules are exactly the ones `rocket align` trains (same
seed, same order, so tiny presets and fresh LoRA get the run's random init), a checkpoint loads only when
its tensors are exactly the trainable parameters with their shapes, and the teacher is built only when
someone needs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from rocket_core.align.head import AlignmentHead
from rocket_core.contract_info import expect_model
from rocket_core.contracts import Batch, TeacherModel, VLAModel
from rocket_core.engine import AlignPlan, plan_run
from rocket_core.errors import RocketError
from rocket_core.registry import Registry
from rocket_core.specs import RunSpec
from rocket_core.train.checkpoint import CheckpointData, load_checkpoint
from rocket_core.train.manifest import mismatch


class AlignModule(nn.Module):
    """What DDP wraps: the VLA and (when the coefficient is not 0) the alignment head."""

    def __init__(self, vla: VLAModel, head: AlignmentHead | None, vla_layers: Sequence[int]) -> None:
        super().__init__()
        self.vla = vla
        self.head = head
        self.vla_layers = list(vla_layers)

    def forward(self, batch: Batch, targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Action loss and per-pair alignment losses (None without alignment) of one micro-batch."""
        out = self.vla.forward_align(batch, self.vla_layers if self.head is not None else [])
        if self.head is None:
            return out.action_loss, None
        states = [out.vision_states[k] for k in self.vla_layers]
        return out.action_loss, self.head(states, targets=targets, token_mask=out.token_mask).pair_losses

    def trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def load_weights(module: AlignModule, tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Copy `tensors` into the trainable parameters: exactly those names, exactly their shapes."""
    params = module.trainable()
    mismatch(source, {n: list(p.shape) for n, p in params.items()}, {n: list(t.shape) for n, t in tensors.items()})
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name].to(p.dtype))


def build_module(plan: AlignPlan, weights: Mapping[str, torch.Tensor] | None = None,
                 source: str | Path = "weights") -> AlignModule:
    """The `AlignModule` exactly as `rocket align` builds it, optionally loaded with trained weights.

    Seeding with the run's seed first reproduces the run's random-init weights (tiny presets, fresh LoRA);
    pretrained frozen weights come from `spec.vla.checkpoint`.
    """
    from accelerate.utils import set_seed

    spec = plan.spec
    set_seed(spec.training.seed)
    vla = expect_model("vla", plan.vla.name, plan.vla.build(spec.vla))
    vla.configure_training(spec.training)  # also at inference: the saved parameter names (LoRA) follow from it
    head = plan.build_head() if spec.alignment.coefficient > 0 else None
    module = AlignModule(vla, head, plan.layers.vla)
    if weights is not None:
        load_weights(module, weights, source)
    return module


def build_teacher(plan: AlignPlan) -> TeacherModel:
    """The frozen teacher; built after the module (as `rocket align` does) so seeded presets match."""
    teacher: TeacherModel = expect_model("teacher", plan.teacher.name, plan.teacher.build(plan.spec.teacher))
    return teacher


def apply_checkpoint(module: AlignModule, ckpt: CheckpointData) -> None:
    """Load `ckpt`'s trained weights into `module` after checking that every tensor file fits it: trainable
    and EMA names and shapes, the projector under its reference names."""
    folder = ckpt.path or Path("checkpoint")
    load_weights(module, ckpt.trainable, folder / "trainable.safetensors")
    if ckpt.ema is not None:
        mismatch(folder / "ema.safetensors", {n: list(p.shape) for n, p in module.trainable().items()},
                 {n: list(t.shape) for n, t in ckpt.ema.items()})
    head_state = module.head.projector.state_dict() if module.head is not None else None
    if (head_state is None) != (ckpt.projector is None):
        state = "lacks" if ckpt.projector is None else "has"
        raise RocketError(f"checkpoint '{folder}' {state} projector.safetensors, which its spec's alignment "
                          f"coefficient {ckpt.spec.alignment.coefficient} contradicts; use another checkpoint")
    if head_state is not None and ckpt.projector is not None:
        mismatch(folder / "projector.safetensors", {k: list(v.shape) for k, v in head_state.items()},
                 {k: list(v.shape) for k, v in ckpt.projector.items()})


@dataclass
class TrainedRun:
    """A run rebuilt from a checkpoint: its resolved plan, the loaded `AlignModule`, its teacher (or None)."""

    plan: AlignPlan
    module: AlignModule
    teacher: TeacherModel | None
    checkpoint: CheckpointData
    path: Path
    weights: str  # "trainable" or "ema"


def with_data(spec: RunSpec, dataset: str | None) -> RunSpec:
    """`spec` reading `dataset` (local folder or Hub id) instead of its own; None keeps it."""
    if dataset is None:
        return spec
    return spec.model_copy(update={"data": spec.data.model_copy(update={"dataset": dataset})})


def load_trained(path: str | Path, *, dataset: str | None = None, registry: Registry | None = None,
                 ema: bool | None = False, teacher: bool = True, frozen: bool = False) -> TrainedRun:
    """Rebuild a checkpoint's `AlignModule` with its trained weights (and its teacher): verified files, exact
    tensor names and shapes.

    `ema`: True loads the EMA weights (refused when there are none), None loads them when present, False
    the trained ones. `dataset` replaces the spec's dataset (analysis on other data). `frozen`: no
    parameter requires grad (inference); otherwise the trained ones do, as in training (gradient analysis).
    """
    ckpt = load_checkpoint(Path(path), training_state=False)
    folder = ckpt.path or Path(path)
    if ema and ckpt.ema is None:
        raise RocketError(f"checkpoint '{folder}' has no ema.safetensors (the run had no training.ema_decay); "
                          "drop --ema")
    use_ema = ckpt.ema is not None and ema is not False
    plan = plan_run(with_data(ckpt.spec, dataset), registry, ckpt.extra.get("plugins"))
    module = build_module(plan)
    apply_checkpoint(module, ckpt)
    if use_ema:
        load_weights(module, ckpt.ema or {}, folder / "ema.safetensors")
    if frozen:
        module.requires_grad_(False)
    module.eval()
    return TrainedRun(plan, module, build_teacher(plan) if teacher else None, ckpt, folder,
                      "ema" if use_ema else "trainable")
