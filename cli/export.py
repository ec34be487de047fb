"""`rocket export`: a run's checkpoint -> an OpenVLA-OFT-format folder (merged model, heads, statistics).

The folder has the layout of the reference's published checkpoints (so OFT tooling and `rocket serve`
read it the same way) plus our `conventions.json` and a `manifest.json` of SHA-256 checksums.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import typer

from rocket_cli.common import console, handle_errors
from rocket_core.errors import RocketError

MANIFEST = "manifest.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "preprocessor_config.json", "processor_config.json")


def write_manifest(folder: Path) -> Path:
    """`manifest.json`: size and SHA-256 of every other file in `folder` (recursively)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        files[str(path.relative_to(folder))] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    out = folder / MANIFEST
    out.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1))
    return out


def oft_statistics(conv: Any) -> dict[str, Any]:
    """`dataset_statistics.json` in OFT's form (q01/q99/mask per group) from our quantile conventions."""
    if conv.normalization.mode != "quantile":
        raise RocketError("the OFT layout stores q01/q99 bounds; this run used mean_std normalisation (pi0 family)")
    out = {}
    for name, group in conv.normalization.groups.items():
        entry: dict[str, Any] = {}
        for ours, theirs in (("action", "action"), ("state", "proprio")):
            norm = getattr(group, ours)
            if norm is not None:
                entry[theirs] = {"q01": norm.low, "q99": norm.high, "mask": norm.mask}
        out[name] = entry
    return out


def merged_state(model: Any) -> dict[str, Any]:
    """Every tensor of `model` with LoRA merged into its base weights (W + scale * B A), under the base names."""
    import torch

    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_A") and hasattr(module, "merge") and not getattr(module, "merged", False):
                module.merge()
    return {k.replace(".base_layer.", "."): v.detach().contiguous().clone()
            for k, v in model.state_dict().items() if ".lora_" not in k}


def export_run(checkpoint: Path, out: Path, ema: bool = False) -> Path:
    """Write the OFT layout of a run's OpenVLA checkpoint into `out` (atomically: a temp folder, renamed)."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from rocket_core.conventions import Conventions
    from rocket_core.eval.policy import Policy
    from rocket_core.specs import RunSpec
    from rocket_core.train.checkpoint import find_checkpoint
    from rocket_plugins.vla.openvla.oft import OPTIONS_KEY

    ckpt = find_checkpoint(checkpoint)
    spec = RunSpec.model_validate(yaml.safe_load((ckpt / "spec.yaml").read_text()))
    if spec.vla.name != "openvla":
        raise RocketError(f"rocket export writes the OpenVLA-OFT layout; this run trained '{spec.vla.name}'")
    conv = Conventions.load(ckpt)
    if conv is None:
        raise RocketError(f"checkpoint '{ckpt}' has no conventions.json (written by an older rocket); retrain or "
                          "resume it for one more step")
    if out.exists() and any(out.iterdir()):
        raise RocketError(f"'{out}' is not empty; choose another -o folder")
    policy = Policy.from_checkpoint(ckpt, ema=ema)
    model = policy.model.float()
    state = merged_state(model)
    parts = ("action_head", "proprio_projector")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_file({k: v for k, v in state.items() if not k.startswith(parts)}, str(tmp / "model.safetensors"))
        for part in parts:
            sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
            if sub:
                torch.save(sub, tmp / f"{part}--{_step(ckpt)}_checkpoint.pt")
        config = {**_hf_config(spec, tmp), OPTIONS_KEY: spec.vla.options}
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        (tmp / "dataset_statistics.json").write_text(json.dumps(oft_statistics(conv), indent=1))
        conv.save(tmp)
        write_manifest(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written
        raise
    if out.exists():
        out.rmdir()
    tmp.replace(out)
    return out


def _step(ckpt: Path) -> int:
    return int(json.loads((ckpt / "state.json").read_text()).get("step", 0))


def _hf_config(spec: Any, dest: Path) -> dict[str, Any]:
    """config.json of the base model (a preset's own for tiny models); tokenizer files are copied beside it."""
    from rocket_core.hub import resolve_weights
    from rocket_plugins.vla.openvla.options import DEFAULT_CHECKPOINT, PRESETS

    if spec.vla.preset is not None:
        return dict(PRESETS[spec.vla.preset])
    base = resolve_weights(spec.vla.checkpoint or DEFAULT_CHECKPOINT, spec.vla.revision, ("*.json", "*.model"), "openvla")
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, dest / name)
    config = json.loads((base / "config.json").read_text())
    config.pop("norm_stats", None)  # dataset_statistics.json carries this run's
    return config


def register(app: typer.Typer) -> None:
    @app.command("export")
    @handle_errors
    def export(
        checkpoint: Path = typer.Option(..., help="A rocket align run folder or checkpoint folder."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder to write (must be new or empty)."),
        merge_lora: bool = typer.Option(True, "--merge-lora/--no-merge-lora",
                                        help="Merge LoRA into the base weights (the OFT layout needs it)."),
        ema: bool = typer.Option(False, help="Export the EMA weights."),
    ) -> None:
        """Export an OpenVLA run as an OpenVLA-OFT folder that `rocket serve --checkpoint` and OFT tools read."""
        if not merge_lora:
            raise RocketError("the OpenVLA-OFT layout holds merged weights; drop --no-merge-lora")
        out = export_run(checkpoint, output, ema=ema)
        files = sorted(p.name for p in out.iterdir())
        console.print(f"exported {checkpoint} to {out}: {', '.join(files)}", highlight=False)
