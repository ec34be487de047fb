"""Weights in and out: the (sharded) OpenVLA safetensors, the OFT heads and the LoRA adapter.

Every key is checked before anything loads: missing or mis-shaped keys fail with their names, an
unexpected key fails unless it is a known optional part (rotary caches old transformers saved).
Reference training checkpoints are torch files; they are read with `weights_only=True` and their DDP
`module.` prefix is dropped. What we write is safetensors.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rocket_core import hub
from rocket_core.errors import RocketError
from rocket_core.hub import load_state_dict

OPTIONAL_KEYS = re.compile(r"language_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
HEAD_PARTS = ("action_head", "proprio_projector")
ADAPTER_PREFIX = "base_model.model."


def _names(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def shard_files(folder: Path) -> list[Path]:
    """The model's safetensors files: those the index names, else `model*.safetensors` at the top."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise RocketError(f"'{folder}' lacks shards named in its index: {_names(missing)}; re-download it")
        return [folder / n for n in names]
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise RocketError(f"'{folder}' holds no OpenVLA safetensors weights (model*.safetensors)")
    return files


def check_keys(expected: dict[str, torch.Size], found: dict[str, tuple[int, ...]], where: str) -> None:
    """Fail with names on missing, mis-shaped or unknown keys (known optional ones aside)."""
    hub.check_keys(expected, found, f"'{where}'", ignore=lambda key: bool(OPTIONAL_KEYS.fullmatch(key)),
                   hint="check the checkpoint and its config.json against the OpenVLA architecture")


def load_openvla_weights(model: nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """Load the checkpoint's `vision_backbone/projector/language_model` keys into `model`.

    The model may sit on the meta device: tensors are then assigned, not copied, so a 7B model never
    exists twice in memory. The OFT parts are separate files (`load_part`), never model shards.
    """
    files = shard_files(folder)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(HEAD_PARTS)}
    found: dict[str, tuple[int, ...]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                found[key] = tuple(f.get_slice(key).get_shape())
    check_keys(expected, found, str(folder))
    state = {k: v.to(dtype) for file in files for k, v in load_file(str(file)).items() if k in expected}
    model.load_state_dict(state, strict=False, assign=True)


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DDP saves `module.<name>`; the module itself expects `<name>`."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def find_part_file(folder: Path, part: str, step: int | str | None = None) -> Path | None:
    """Our `<part>.safetensors`, else the reference's `<part>--<step>_checkpoint.pt` (one, or the given step)."""
    ours = folder / f"{part}.safetensors"
    if ours.is_file():
        return ours
    pattern = f"{part}--{step}_checkpoint.pt" if step is not None else f"{part}--*checkpoint.pt"
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        raise RocketError(f"'{folder}' holds several {part} checkpoints ({_names(p.name for p in found)}); set options.checkpoint_step")
    return found[0] if found else None


def load_part(module: nn.Module, path: Path) -> None:
    """Load one OFT part (strict), from safetensors or a reference torch file."""
    state = strip_module_prefix(load_state_dict(path))
    expected = {k: v.shape for k, v in module.state_dict().items()}
    check_keys(expected, {k: tuple(v.shape) for k, v in state.items()}, str(path))
    module.load_state_dict(state, strict=True)


def read_part(path: Path) -> dict[str, torch.Tensor]:
    """A state dict the alignment head owns (`align_projectors--*`), prefix-free, for the core to load."""
    return strip_module_prefix(load_state_dict(path))


def save_parts(model: nn.Module, folder: Path) -> None:
    """Write each OFT part the model has as `<part>.safetensors` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in HEAD_PARTS:
        module = getattr(model, part, None)
        if module is not None:
            save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(folder / f"{part}.safetensors"))


def load_lora_adapter(model: nn.Module, folder: Path) -> dict[str, Any]:
    """Inject a saved LoRA adapter (ours or the reference's PEFT folder) into exactly the modules it covers.

    Returns its rank, alpha and dropout, so it can be saved again after further training.
    """
    from peft import LoraConfig, inject_adapter_in_model

    weights = folder / "adapter_model.safetensors"
    if not (folder / "adapter_config.json").is_file() or not weights.is_file():
        raise RocketError(f"'{folder}' is not a LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")
    cfg = json.loads((folder / "adapter_config.json").read_text())
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise RocketError(f"'{folder}' uses rsLoRA/DoRA; only plain LoRA adapters are supported")
    state = load_file(str(weights))
    hyper = {"rank": cfg["r"], "alpha": cfg["lora_alpha"], "dropout": cfg.get("lora_dropout", 0.0)}
    targets = sorted({k.removeprefix(ADAPTER_PREFIX).rsplit(".lora_", 1)[0] for k in state if ".lora_" in k})
    config = LoraConfig(r=hyper["rank"], lora_alpha=hyper["alpha"], lora_dropout=hyper["dropout"], target_modules=targets)
    inject_adapter_in_model(config, model)
    renamed = {re.sub(r"\.lora_(A|B)\.weight$", r".lora_\1.default.weight", k.removeprefix(ADAPTER_PREFIX)): v for k, v in state.items()}
    own = {k: v.shape for k, v in model.state_dict().items() if ".lora_" in k}
    check_keys(own, {k: tuple(v.shape) for k, v in renamed.items()}, str(folder))
    model.load_state_dict(renamed, strict=False)
    return hyper


def save_lora_adapter(model: nn.Module, folder: Path, rank: int, alpha: int, dropout: float) -> None:
    """Write the model's LoRA weights as a PEFT adapter folder (keys as PEFT saves them)."""
    state = {
        ADAPTER_PREFIX + k.replace(".default.weight", ".weight"): v.detach().contiguous()
        for k, v in model.state_dict().items()
        if ".lora_" in k
    }
    if not state:
        raise RocketError("the model has no LoRA layers to save; call add_lora() first")
    targets = sorted({k.removeprefix(ADAPTER_PREFIX).rsplit(".lora_", 1)[0] for k in state})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "target_modules": targets, "bias": "none"}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=1))
