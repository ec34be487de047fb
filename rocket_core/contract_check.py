"""Contract checks: a plugin bug becomes one line naming the method and what was expected, not a traceback.

Three levels, all built on the same per-method checks:
- `engine.token_count_problems`: from `info()` alone (every `plan_run`, so `rocket align --dry-run` too): the
  VLA's vision-token count must equal cameras x the teacher grid pooled to it, frame-major.
- `check_run`: before `rocket align`'s first step, one forward of the real first batch through the built
  VLA and teacher (random state untouched, nothing written).
- `check_plugin`: `rocket plugins check KIND NAME`: the plugin built on its `check_preset`, one random batch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, cast

import torch

from rocket_core.contract_info import MODEL_METHODS, pooled_token_count, raised_line, token_count_problems
from rocket_core.contracts import (
    Batch,
    BenchmarkAdapter,
    ProjectorStrategy,
    TeacherAdapter,
    TeacherInfo,
    VLAAdapter,
    VLAInfo,
    VLAModel,
    VLAOutput,
)
from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.data.dataset import VLADataset
    from rocket_core.engine import AlignPlan

TASKS = ("pick up the red cube", "open the top drawer")


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def vla_output_problems(vla: str, out: Any, layers: Sequence[int], batch: int, tokens: int, width: int,
                        how: str = "") -> list[str]:
    """`forward_align`'s answer against the contract: a VLAOutput, a scalar loss, every layer (B, V, D)."""
    where = f"VLA '{vla}' forward_align"
    if not isinstance(out, VLAOutput):
        return [f"{where}: expected a rocket_core.contracts.VLAOutput, got {type(out).__name__}"]
    problems = []
    loss = out.action_loss
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        problems.append(f"{where}: action_loss must be a scalar float tensor, got {_shape(loss)}")
    if not isinstance(out.vision_states, dict):
        return problems + [f"{where}: vision_states must be a dict {{layer: (B, V, D)}}, "
                           f"got {type(out.vision_states).__name__}"]
    missing = [k for k in layers if k not in out.vision_states]
    if missing:
        problems.append(f"{where}: vision_states lacks requested layer(s) {missing} (got {sorted(out.vision_states)})")
    want = (batch, tokens, width)
    for k in layers:
        x = out.vision_states.get(k)
        if x is None:
            continue
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 3:
            problems.append(f"{where}: vision_states[{k}] must be a float tensor (B, V, D) = {want}, got {_shape(x)}")
        elif tuple(x.shape) != want:
            got_b, got_v, got_d = x.shape
            if got_v != tokens:
                detail = f"{got_v} vision tokens per sample, expected {tokens}" + (f" ({how})" if how else "")
            elif got_d != width:
                detail = f"width {got_d}, expected info().hidden_size {width}"
            else:
                detail = f"batch {got_b}, expected {batch}"
            problems.append(f"{where}: vision_states[{k}] has {detail}")
            break  # the other layers almost always share the bug
    mask = out.token_mask
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or tuple(mask.shape) != (batch, tokens)):
        problems.append(f"{where}: token_mask must be None or bool (B, V) = {(batch, tokens)}, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)} {_shape(mask)}")
    return problems


def teacher_output_problems(teacher: str, feats: Any, layers: Sequence[int], batch: int, frames: int,
                            info: TeacherInfo) -> list[str]:
    """`extract`'s answer: every requested layer as (B, S, ph*pw, feature_dim)."""
    where = f"teacher '{teacher}' extract"
    if not isinstance(feats, dict):
        return [f"{where}: expected a dict {{layer: (B, S, P, C)}}, got {type(feats).__name__}"]
    missing = [k for k in layers if k not in feats]
    if missing:
        return [f"{where}: lacks requested layer(s) {missing} (got {sorted(feats)})"]
    ph, pw = info.patch_grid
    want = (batch, frames, ph * pw, info.feature_dim)
    for k in layers:
        x = feats[k]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or tuple(x.shape) != want:
            return [f"{where}: layer {k} must be (B, S, ph*pw, feature_dim) = {want} (info(): patch grid "
                    f"{ph}x{pw}, width {info.feature_dim}), got {_shape(x)}"]
    return []


def _fail(problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more; see `rocket plugins check`)" if len(problems) > 1 else ""
        raise RocketError(problems[0] + more)


def check_run(plan: AlignPlan, vla: Any, teacher: Any, dataset: VLADataset, device: torch.device | str) -> None:
    """Before the first step: the plan's layers through the real first batch; raises one line on a breach.

    Runs without gradients and restores every random state, so a checked run trains exactly as an unchecked one.
    `teacher` None checks the VLA alone (a run that reads its targets from the teacher cache never calls it).
    """
    from rocket_core.align.targets import teacher_features
    from rocket_core.data import collate_batch, to_device

    vinfo, tinfo = plan.vla_info, plan.teacher_info
    b = min(plan.spec.training.batch_size, len(dataset))
    batch = to_device(collate_batch([dataset[i] for i in range(b)]), device)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    layers = list(plan.layers.vla) if plan.spec.alignment.coefficient > 0 else []
    tokens, how = vinfo.num_vision_tokens, ""
    if plan.spec.alignment.pooling == "bilinear":
        tokens, how = pooled_token_count(vinfo, tinfo)
    who = f"VLA '{plan.vla.name}'"
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        try:
            out = vla.forward_align(batch, layers)
            problems = vla_output_problems(plan.vla.name, out, layers, b, tokens, vinfo.hidden_size, how)
            if teacher is not None and not problems:
                who = f"teacher '{plan.teacher.name}'"
                t_layers = sorted(set(plan.layers.teacher))
                images = batch.get("teacher_images", batch["images"])
                feats = teacher.extract(images, t_layers)
                problems = teacher_output_problems(plan.teacher.name, feats, t_layers, b, images.shape[1], tinfo)
                if not problems:  # padding to the VLA's camera slots, as the trainer does
                    teacher_features(teacher, batch, t_layers, vinfo.num_images)
        except RocketError:
            raise
        except Exception as exc:  # a plugin bug: one line, not a traceback mid-training
            problems = [raised_line(who, exc)]
    _fail(problems)


# ---- `rocket plugins check KIND NAME` -----------------------------------------------------------------------


def random_batch(info: VLAInfo, batch: int = 2, size: int = 64, seed: int = 0) -> Batch:
    """A canonical `Batch` of random frames in [0, 1] with the shapes `info` asks for."""
    g = torch.Generator().manual_seed(seed)
    chunk, action_dim, state_dim = info.chunk_size or 1, info.action_dim or 7, info.state_dim or 8
    return {
        "images": torch.rand(batch, info.num_images, 3, size, size, generator=g),
        "image_masks": torch.ones(batch, info.num_images, dtype=torch.bool),
        "state": torch.rand(batch, state_dim, generator=g) * 2 - 1,
        "actions": torch.rand(batch, chunk, action_dim, generator=g) * 2 - 1,
        "action_is_pad": torch.zeros(batch, chunk, dtype=torch.bool),
        "task": list(TASKS[:batch]),
    }


def _check_layers(adapter: type[VLAAdapter] | type[TeacherAdapter], info: Any, side: int, top: int) -> list[int]:
    """The default pairs' side (resolved), else the first and last index."""
    defaults = getattr(info, "default_layers", None)
    picks = list(defaults[side]) if defaults else [0, -1]
    return sorted({adapter.resolve_layer(info, i) for i in picks} | {0, top})


def _check_vla(cls: type[VLAAdapter], spec: Any) -> list[str]:
    from rocket_core.specs import LoraSpec, TrainingSpec

    info = cls.info(spec)
    if not isinstance(info, VLAInfo):
        return [f"VLA '{cls.name}' info: expected a VLAInfo, got {type(info).__name__}"]
    problems = token_count_problems(cls.name, info, TeacherInfo(1, 1, (1, 1), (1, 1)), pooling="random")
    torch.manual_seed(0)
    model = cls.build(spec)
    for method in MODEL_METHODS["vla"]:
        if not callable(getattr(model, method, None)):
            problems.append(f"VLA '{cls.name}' build: the model has no {method} method (contracts.VLAModel)")
    if problems:
        return problems
    training = TrainingSpec(lora=LoraSpec(rank=4, alpha=4))
    model.configure_training(training)
    if isinstance(model, torch.nn.Module):
        problems += _trainable_problems(cls.name, model, training.finetune)
    layers = _check_layers(cls, info, 0, info.max_layer_index)
    batch = random_batch(info)
    out = model.forward_align(batch, layers)
    problems += vla_output_problems(cls.name, out, layers, 2, info.num_vision_tokens, info.hidden_size,
                                    f"info().num_vision_tokens = {info.num_images} cameras x {info.tokens_per_image}")
    if isinstance(out, VLAOutput) and isinstance(out.action_loss, torch.Tensor) and not out.action_loss.requires_grad:
        problems.append(f"VLA '{cls.name}' forward_align: action_loss does not require grad after "
                        "configure_training (nothing would train)")
    inputs = {k: v for k, v in batch.items() if k not in ("actions", "action_is_pad")}
    with torch.no_grad():
        pred = model.predict_action(inputs)  # type: ignore[arg-type]  # an inference batch: no actions
    want = [2, info.chunk_size, info.action_dim]
    if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or any(
            w is not None and g != w for g, w in zip(pred.shape, want)):
        shown = tuple("*" if w is None else w for w in want)
        problems.append(f"VLA '{cls.name}' predict_action: expected a tensor (B, chunk, action_dim) = {shown}, "
                        f"got {_shape(pred)}")
    if not problems and isinstance(model, torch.nn.Module):
        problems += _unused_trainable(cls.name, model, batch, inputs, layers)
    return problems


def _trainable_problems(vla: str, model: torch.nn.Module, finetune: str) -> list[str]:
    """After `configure_training`: something trains and, with LoRA, the base model stays frozen."""
    flags = [p.requires_grad for p in model.parameters()]
    where = f"VLA '{vla}' configure_training"
    if not any(flags):
        return [f"{where}: no parameter has requires_grad after LoRA set-up; unfreeze the LoRA adapters and the "
                "parts trained in full (a model without configure_training trains nothing)"]
    if finetune == "lora" and all(flags):
        return [f"{where}: every parameter ({len(flags)}) has requires_grad with finetune 'lora'; freeze the base "
                "model so that only the LoRA adapters and the parts trained in full train"]
    return []


def _unused_trainable(vla: str, model: torch.nn.Module, batch: Batch, inputs: dict[str, Any],
                      layers: list[int]) -> list[str]:
    """Perturbing each group of trainable parameters (LoRA adapters, the rest) must change both the training
    loss and the predicted actions; else training them changes nothing (e.g. nn.TransformerEncoderLayer's
    eval fast path reads the base weights and bypasses LoRA)."""
    policy = cast(VLAModel, model)  # the module is the plugin's model: nn.Module's attribute typing hides its methods

    def outputs() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            torch.manual_seed(0)
            model.train()
            loss = policy.forward_align(batch, layers).action_loss
            torch.manual_seed(0)
            model.eval()
            return loss, policy.predict_action(inputs)  # type: ignore[arg-type]  # an inference batch: no actions

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = {"LoRA adapter": [p for n, p in trainable if "lora_" in n],
              "fully trained": [p for n, p in trainable if "lora_" not in n]}
    before = outputs()
    g = torch.Generator().manual_seed(0)
    for label, params in groups.items():
        if not params:
            continue
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.add_(0.1 * torch.randn(p.shape, generator=g).to(p))
        after = outputs()
        with torch.no_grad():
            for p, old in zip(params, saved):
                p.copy_(old)
        for method, a, b in zip(("forward_align", "predict_action"), before, after):
            if torch.equal(a, b):
                return [f"VLA '{vla}' {method}: changing the trainable {label} parameters does not change its "
                        "output, so training them changes nothing; compute through the trained modules (e.g. "
                        "nn.TransformerEncoderLayer's eval fast path bypasses LoRA: call its parts yourself)"]
    model.train()
    return []


def _check_teacher(cls: type[TeacherAdapter], spec: Any) -> list[str]:
    info = cls.info(spec)
    if not isinstance(info, TeacherInfo):
        return [f"teacher '{cls.name}' info: expected a TeacherInfo, got {type(info).__name__}"]
    torch.manual_seed(0)
    model = cls.build(spec)
    if not callable(getattr(model, "extract", None)):
        return [f"teacher '{cls.name}' build: the model has no extract method (contracts.TeacherModel)"]
    layers = sorted({0, info.num_layers - 1})
    images = torch.rand(1, 2, 3, *info.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = model.extract(images, layers)
    problems = teacher_output_problems(cls.name, feats, layers, 1, 2, info)
    if isinstance(model, torch.nn.Module) and any(p.requires_grad for p in model.parameters()):
        problems.append(f"teacher '{cls.name}' build: a frozen teacher must have no parameter with requires_grad")
    return problems


def _check_projector(cls: type[ProjectorStrategy], spec: Any) -> list[str]:
    pairs = 1 if cls.max_pairs == 1 else 2
    cls.parse_options(spec.options)
    bank = cls.build(pairs, 16, 8, spec, 1)
    where = f"projector '{cls.name}' build"
    for method in ("pool", "layer_index", "pair_widths"):
        if not callable(getattr(bank, method, None)):
            return [f"{where}: the bank has no {method} method (see rocket_core.align.projector.ProjectorBank)"]
    x = torch.rand(2, 5, 16)
    for pair in range(pairs):
        for proj in bank.pool(pair):
            y = proj(x, bank.layer_index(pair))
            if not isinstance(y, torch.Tensor) or tuple(y.shape) != (2, 5, 8):
                return [f"{where}: pair {pair}'s projector must map (B, V, in_dim) (2, 5, 16) to (B, V, out_dim) "
                        f"(2, 5, 8), got {_shape(y)}"]
    return []


def _check_benchmark(cls: type[BenchmarkAdapter]) -> list[str]:
    if not cls.suites:
        return [f"benchmark '{cls.name}' suites: expected at least one suite name"]
    problems = []
    for family in cls.families or ("",):  # "": the default of a VLA that names no family
        try:
            cls.protocol(cls.suites[0], family)
        except (NotImplementedError, TypeError, KeyError) as exc:
            problems.append(f"benchmark '{cls.name}' protocol('{cls.suites[0]}', '{family}'): "
                            f"{type(exc).__name__}: {exc}")
    return problems


def check_plugin(kind: str, cls: type[Any], preset: str | None = None) -> list[str]:
    """Every contract breach of plugin `cls` (empty: it passes). Exceptions inside a method are breaches too."""
    from rocket_core.specs import ProjectorSpec, TeacherSpec, VLASpec

    preset = preset or getattr(cls, "check_preset", None)
    try:
        if kind == "vla":
            return _check_vla(cls, VLASpec(name=cls.name, preset=preset))
        if kind == "teacher":
            return _check_teacher(cls, TeacherSpec(name=cls.name, preset=preset))
        if kind == "projector":
            return _check_projector(cls, ProjectorSpec(name=cls.name))
        if kind == "benchmark":
            return _check_benchmark(cls)
    except RocketError as exc:
        return [f"{kind} '{cls.name}': {exc}"]
    except Exception as exc:  # a plugin bug: report it as one line, never a traceback
        return [raised_line(f"{kind} '{cls.name}'", exc)]
    raise RocketError(f"unknown plugin kind '{kind}'; use vla, teacher, projector or benchmark")

