"""Verified, atomic checkpoints: everything needed to continue a run exactly, and to ship its trained parts.

Layout of `checkpoints/step-000123/`:
  trainable.safetensors  every trainable parameter (LoRA, fully trained parts, alignment projector)
  projector.safetensors  the alignment projector under the reference names (`{pair}.{ensemble}.fc1.weight`)
  ema.safetensors        EMA of the trainable parameters (when enabled)
  optimizer.pt           AdamW + scheduler state (loaded with weights_only=True)
  rng.safetensors        torch RNG states and the random-pooling generator
  state.json             step, samples seen, world size, package versions, last metrics, the dataset's
                         state/action normalisation and camera slots (what inference needs)
  spec.yaml / layers.yaml  the resolved run spec and layer map
  conventions.json ...   extra files handed in by the trainer (data conventions)
  manifest.json          size, sha256 and tensors of every other file, and the step (train/manifest.py)

A checkpoint is written to `.tmp-*`, manifested, verified and only then renamed into place; `latest` is
replaced atomically after that, so it only ever names a complete, verified checkpoint and a save killed
at any point leaves the previous one in charge. Loading verifies the manifest before reading a tensor.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from rocket_core.errors import RocketError
from rocket_core.specs import RunSpec, format_validation_error
from rocket_core.testhook import pause_point
from rocket_core.train.manifest import (
    MANIFEST,
    check_listed,
    load_torch_file,
    mismatch,
    torch_specs,
    verify_folder,
    write_manifest,
)

PACKAGES = ("rocket-vla", "torch", "transformers", "peft", "accelerate", "safetensors")
CHECKPOINT_FILES = ("trainable.safetensors", "projector.safetensors", "ema.safetensors", "optimizer.pt",
                    "rng.safetensors", "state.json", "spec.yaml", "layers.yaml")
# spec fields a resume may change: they extend or observe the run, never alter its model, optimiser or data
RESUMABLE = ("training.max_steps", "training.save_every", "training.log_every", "training.num_workers",
             "training.report_to")


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
    files: dict[str, str] = field(default_factory=dict)  # extra text files (name -> content), e.g. conventions.json
    path: Path | None = None  # the folder it was loaded from


def latest_name(run_dir: Path) -> str | None:
    latest = run_dir / "checkpoints" / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def clean_stale(run_dir: Path) -> list[Path]:
    """Remove what killed saves left behind (`.tmp-*` folders, `.latest-*` files); both only ever ours."""
    root = run_dir / "checkpoints"
    stale = sorted(root.glob(".tmp-*")) + sorted(root.glob(".latest-*")) if root.is_dir() else []
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return stale


def _write_files(folder: Path, data: CheckpointData) -> dict[str, Any]:
    save_file(_cpu(data.trainable), str(folder / "trainable.safetensors"))
    if data.projector is not None:
        save_file(_cpu(data.projector), str(folder / "projector.safetensors"))
    if data.ema is not None:
        save_file(_cpu(data.ema), str(folder / "ema.safetensors"))
    opt = {"optimizer": data.optimizer, "scheduler": data.scheduler}
    torch.save(opt, folder / "optimizer.pt")
    save_file(_cpu(data.rng), str(folder / "rng.safetensors"))
    spec_doc = data.spec.model_dump(mode="json")
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec_doc, sort_keys=False))
    (folder / "layers.yaml").write_text(yaml.safe_dump(spec_doc["layers"], sort_keys=False))
    state = {"step": data.step, "samples_seen": data.samples_seen, "versions": package_versions(), **data.extra}
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    for name, text in data.files.items():
        if name in CHECKPOINT_FILES or name == MANIFEST or "/" in name:
            raise RocketError(f"extra checkpoint file '{name}' would replace a checkpoint file; rename it")
        (folder / name).write_text(text)
    return {"optimizer.pt": opt}


def save_checkpoint(run_dir: Path, data: CheckpointData) -> Path:
    """Write `run_dir/checkpoints/step-XXXXXX`, verify it, then point `latest` at it.

    The checkpoint `latest` names is never touched: a step's state is fixed once saved, so saving the
    latest step again returns it as it is.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{data.step:06d}"
    if latest_name(run_dir) == final.name and final.is_dir():
        return final
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        torch_files = _write_files(tmp, data)
        write_manifest(tmp, data.step, torch_files)
        _verify(tmp)  # what is on disk, not what we meant to write
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours, never published: `latest` still names the previous one
        raise
    pause_point("save-written", data.step)
    if final.exists():  # left by a save killed before `latest` moved: never latest, safe to replace
        shutil.rmtree(final)
    tmp.replace(final)
    pause_point("save-renamed", data.step)
    point_latest(run_dir, final.name)
    return final


def point_latest(run_dir: Path, name: str) -> None:
    """Atomically make `checkpoints/latest` name `name` (a verified checkpoint of this run)."""
    root = run_dir / "checkpoints"
    pointer = root / f".latest-{os.getpid()}"
    with open(pointer, "w") as f:
        f.write(name)
        f.flush()
        os.fsync(f.fileno())
    pointer.replace(root / "latest")
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or a run folder (the checkpoint its `latest` names)."""
    path = Path(path)
    if (path / MANIFEST).is_file() or (path / "state.json").is_file():
        return path
    name = latest_name(path)
    if name is not None:
        candidate = path / "checkpoints" / name
        if "/" not in name and candidate.is_dir():
            return candidate
        raise RocketError(f"'{path}/checkpoints/latest' names '{name}', which is not a checkpoint folder; "
                          "point --resume at one of its step-* folders")
    if not path.exists():
        raise RocketError(f"'{path}' does not exist; pass a run folder or a checkpoint folder")
    raise RocketError(f"no checkpoint found at '{path}': pass a run folder or a checkpoint folder (with {MANIFEST})")


def listed_files(ckpt: Path) -> list[str]:
    """Every file of a checkpoint folder, manifest included (what a copy of it must carry)."""
    return [*verify_folder(ckpt)["files"], MANIFEST]


def has_checkpoint(run_dir: Path) -> bool:
    return latest_name(run_dir) is not None


def check_normalization(norm: Any, path: Path | str) -> None:
    """Normalisation stats must be finite numbers of one length: NaN here means NaN actions when serving."""
    if norm is None:
        return
    if not isinstance(norm, dict):
        raise RocketError(f"'{path}': 'normalization' must be a mapping; resume from another checkpoint")
    for feature, stats in norm.items():
        if stats is None:
            continue
        try:
            low, high = [float(x) for x in stats["low"]], [float(x) for x in stats["high"]]
            ok_len = len(low) == len(high) == len(stats["mask"])
        except (KeyError, TypeError, ValueError):
            raise RocketError(f"'{path}': normalization.{feature} is malformed (needs low, high, mask lists)") from None
        bad = [i for i, v in enumerate(low + high) if not math.isfinite(v)]
        if bad:
            which = "low" if bad[0] < len(low) else "high"
            i = bad[0] if bad[0] < len(low) else bad[0] - len(low)
            raise RocketError(f"'{path}': normalization.{feature}.{which}[{i}] is not finite (it would make every "
                              "action NaN); use another checkpoint, or fix the dataset's statistics")
        if not ok_len:
            raise RocketError(f"'{path}': normalization.{feature} has low, high and mask of different lengths")


def _verify(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, state.json) after checking files, checksums, step and normalisation."""
    doc = verify_folder(ckpt)
    check_listed(ckpt, doc, CHECKPOINT_FILES)
    for name in ("trainable.safetensors", "optimizer.pt", "rng.safetensors", "state.json", "spec.yaml"):
        if name not in doc["files"]:
            raise RocketError(f"checkpoint '{ckpt}' lacks {name}; resume from another checkpoint")
    path = ckpt / "state.json"
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise RocketError(f"'{path}' is not JSON ({exc}); resume from another checkpoint") from None
    if not isinstance(state, dict) or type(state.get("step")) is not int or state["step"] != doc["step"]:
        raise RocketError(f"'{path}': step {state.get('step') if isinstance(state, dict) else None!r} does not match "
                          f"the manifest's step {doc['step']}; resume from another checkpoint")
    if type(state.get("samples_seen")) is not int or state["samples_seen"] < 0:
        raise RocketError(f"'{path}': samples_seen must be an integer >= 0")
    check_normalization(state.get("normalization"), path)
    return doc, state


def load_spec(path: Path) -> RunSpec:
    """A saved `spec.yaml` (checkpoint or run folder) as a RunSpec, with one-line errors."""
    try:
        return RunSpec.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RocketError(f"'{path}' is unreadable ({type(exc).__name__}); resume from another checkpoint") from None
    except ValidationError as exc:
        raise RocketError(f"'{path}': {format_validation_error(exc)}") from None


def load_checkpoint(path: Path, *, training_state: bool = True) -> CheckpointData:
    """Verify (manifest, checksums, step, normalisation), then load. Without `training_state` the optimizer
    and RNG are verified but not loaded (serving, profiling, export)."""
    ckpt = find_checkpoint(path)
    doc, state = _verify(ckpt)
    spec = load_spec(ckpt / "spec.yaml")

    def tensors(name: str) -> dict[str, torch.Tensor] | None:
        return load_file(str(ckpt / name)) if name in doc["files"] else None

    opt: dict[str, Any] = {"optimizer": {}, "scheduler": {}}
    rng: dict[str, torch.Tensor] = {}
    if training_state:
        opt = load_torch_file(ckpt / "optimizer.pt")
        listed = doc["files"]["optimizer.pt"].get("tensors")
        if not isinstance(opt, dict) or not {"optimizer", "scheduler"} <= set(opt):
            raise RocketError(f"'{ckpt / 'optimizer.pt'}' holds no optimizer and scheduler state")
        if listed is not None:
            mismatch(ckpt / "optimizer.pt", {k: v["shape"] for k, v in listed.items()},
                     {k: v["shape"] for k, v in torch_specs(opt).items()})
        rng = tensors("rng.safetensors") or {}
    extra_files = {n: (ckpt / n).read_text() for n in doc["files"]
                   if n not in CHECKPOINT_FILES and n.endswith(".json")}
    return CheckpointData(
        step=state["step"], samples_seen=state["samples_seen"],
        trainable=tensors("trainable.safetensors") or {}, projector=tensors("projector.safetensors"),
        ema=tensors("ema.safetensors"), optimizer=opt["optimizer"], scheduler=opt["scheduler"], rng=rng, spec=spec,
        extra={k: v for k, v in state.items() if k not in ("step", "samples_seen")}, files=extra_files, path=ckpt,
    )


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: doc}


def resume_conflicts(saved: RunSpec, new: RunSpec) -> list[str]:
    """`field: old -> new` for every change a resume may not make (model, optimiser state, data stream)."""
    a, b = _flat(saved.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in RESUMABLE and a.get(k) != b.get(k)]


def same_run_error(changes: list[str], where: object) -> str:
    return (f"--resume continues the same run, but these settings differ from '{where}': {'; '.join(changes)}; "
            "drop those flags to continue it, or start a new run without --resume (a new -o folder)")


def check_resume(ckpt: CheckpointData, spec: RunSpec, world_size: int) -> None:
    """A resume continues the same run or does nothing: refuse any change to the model, optimiser state or
    data stream, a step budget below the checkpoint, and another number of processes (another batch)."""
    where = ckpt.path or "the checkpoint"
    changes = resume_conflicts(ckpt.spec, spec)
    if changes:
        raise RocketError(same_run_error(changes, where))
    if spec.training.max_steps < ckpt.step:
        raise RocketError(f"--max-steps {spec.training.max_steps} is below the checkpoint's step {ckpt.step} "
                          f"('{where}'); give --max-steps {ckpt.step} or more")
    saved_world = ckpt.extra.get("world_size", 1)
    if saved_world != world_size:
        raise RocketError(f"'{where}' was trained with {saved_world} processes and this resume has {world_size}: "
                          f"the global batch would change; resume with --num-processes {saved_world}")
