"""Atomic checkpoints: everything needed to continue a run exactly, and to ship its trained parts.

Layout of `checkpoints/step-000123/`:
  trainable.safetensors  every trainable parameter (LoRA, fully trained parts, alignment projector)
  projector.safetensors  the alignment projector under the reference names (`{pair}.{ensemble}.fc1.weight`)
  ema.safetensors        EMA of the trainable parameters (when enabled)
  optimizer.pt           AdamW + scheduler state (loaded with weights_only=True)
  rng.safetensors        torch RNG states
  state.json             step, samples seen, world size, package versions, last metrics, the dataset's
                         state/action normalisation and camera slots (what inference needs)
  spec.yaml / layers.yaml  the resolved run spec and layer map
  conventions.json       the training data's conventions (rocket_core.conventions): what eval derives from
A checkpoint is written to a temporary folder and renamed into place, so a killed run never leaves a
half-written one; `latest` names the newest complete checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from rocket_core.errors import RocketError
from rocket_core.specs import RunSpec

PACKAGES = ("rocket-vla", "torch", "transformers", "peft", "accelerate", "safetensors")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


@dataclass
class CheckpointData:
    step: int
    samples_seen: int
    trainable: dict[str, torch.Tensor]
    projector: dict[str, torch.Tensor] | None
    ema: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    spec: RunSpec
    extra: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # more text files, e.g. conventions.json


def save_checkpoint(run_dir: Path, data: CheckpointData) -> Path:
    """Write `run_dir/checkpoints/step-XXXXXX` atomically and point `latest` at it."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{data.step:06d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu(data.trainable), str(tmp / "trainable.safetensors"))
    if data.projector is not None:
        save_file(_cpu(data.projector), str(tmp / "projector.safetensors"))
    if data.ema is not None:
        save_file(_cpu(data.ema), str(tmp / "ema.safetensors"))
    torch.save({"optimizer": data.optimizer, "scheduler": data.scheduler}, tmp / "optimizer.pt")
    save_file(_cpu(data.rng), str(tmp / "rng.safetensors"))
    spec_doc = data.spec.model_dump(mode="json")
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec_doc, sort_keys=False))
    (tmp / "layers.yaml").write_text(yaml.safe_dump(spec_doc["layers"], sort_keys=False))
    state = {"step": data.step, "samples_seen": data.samples_seen, "versions": package_versions(), **data.extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    for name, text in data.files.items():
        (tmp / name).write_text(text)
    if final.exists():
        shutil.rmtree(final)
    tmp.replace(final)
    latest_tmp = root / f".latest-{os.getpid()}"
    latest_tmp.write_text(final.name)
    latest_tmp.replace(root / "latest")
    return final


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or a run folder (its newest complete checkpoint)."""
    if (path / "state.json").is_file():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.is_file():
        candidate = path / "checkpoints" / latest.read_text().strip()
        if (candidate / "state.json").is_file():
            return candidate
    raise RocketError(f"no checkpoint found at '{path}': pass a run folder or a checkpoint folder (with state.json)")


def load_checkpoint(path: Path) -> CheckpointData:
    ckpt = find_checkpoint(path)
    try:
        state = json.loads((ckpt / "state.json").read_text())
        spec = RunSpec.model_validate(yaml.safe_load((ckpt / "spec.yaml").read_text()))
        opt = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        optional = {name: load_file(str(ckpt / f"{name}.safetensors")) if (ckpt / f"{name}.safetensors").is_file()
                    else None for name in ("projector", "ema")}
        return CheckpointData(
            step=state["step"],
            samples_seen=state["samples_seen"],
            trainable=load_file(str(ckpt / "trainable.safetensors")),
            projector=optional["projector"],
            ema=optional["ema"],
            optimizer=opt["optimizer"],
            scheduler=opt["scheduler"],
            rng=load_file(str(ckpt / "rng.safetensors")),
            spec=spec,
            extra={k: v for k, v in state.items() if k not in ("step", "samples_seen")},
        )
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise RocketError(f"checkpoint '{ckpt}' is unreadable ({type(exc).__name__}: {exc}); "
                          "resume from an earlier one") from None
