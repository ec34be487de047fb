"""`rocket push`: turn a checkpoint into a Hub-ready folder (weights, layer map, spec, model card).

The folder is a complete checkpoint (so `rocket pull` + `rocket align --resume` continue the run) with
the shippable parts split out: `lora_adapter.safetensors` (LoRA matrices), `heads.safetensors` (VLA
parts trained in full, e.g. the action head), `projector.safetensors` (reference names), and a model
card generated from the spec and the last metrics.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from rocket_core.errors import RocketError
from rocket_core.hub import load_state_dict
from rocket_core.train.checkpoint import find_checkpoint, listed_files, load_checkpoint


def split_trainable(trainable: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(LoRA matrices, fully trained VLA parts), names relative to the VLA (no `vla.` prefix)."""
    vla = {k.removeprefix("vla."): v for k, v in trainable.items() if k.startswith("vla.")}
    lora = {k: v for k, v in vla.items() if ".lora_" in k}
    return lora, {k: v for k, v in vla.items() if k not in lora}


def model_card(checkpoint: Path, repo_id: str = "ORG/NAME") -> str:
    """The README of the pushed repo; its commands name `repo_id`, so they work when copied."""
    ck = load_checkpoint(checkpoint)
    s = ck.spec
    metrics = ck.extra.get("metrics", {})
    layers = s.layers
    assert layers is not None and not isinstance(layers, str)  # a checkpoint's layer map is resolved
    pairs = "\n".join(f"| {i} | {v} | {t} |" for i, (v, t) in enumerate(zip(layers.vla, layers.teacher)))
    base = s.vla.checkpoint or f"{s.vla.name} ({s.vla.preset or 'default weights'})"
    data = s.data.dataset or "the bundled synthetic dataset"
    t = s.training
    shown = {k: round(v, 5) for k, v in metrics.items() if isinstance(v, float)}
    recorded = ck.extra.get("plugins") or {}
    plugins = ", ".join(f"{kind} `{p['name']}` from {p['package'] or 'an unnamed package'} {p['version'] or ''}".rstrip()
                        for kind, p in recorded.items()) or "not recorded (an older checkpoint)"
    return f"""---
library_name: rocket
tags: [robotics, vision-language-action, rocket, 3d-alignment]
---
# {s.vla.name} aligned to {s.teacher.name} with ROCKET

Fine-tuned with [rocket](https://arxiv.org/abs/2602.17951): the VLA's hidden states at {len(layers.vla)} layers are
aligned to a frozen {s.teacher.name} teacher through a `{s.projector.name}` projector.

- **Base VLA**: {base}
- **Teacher**: {s.teacher.checkpoint or s.teacher.name} ({s.teacher.preset or 'default weights'})
- **Training data**: {data}
- **Plugins**: {plugins}
- **Steps**: {ck.step} of {t.max_steps}, batch {t.batch_size} per process x {ck.extra.get('world_size', 1)} processes
  x accumulation {t.grad_accum}; AdamW lr {t.learning_rate:g}, schedule {t.schedule};
  {f'LoRA r {t.lora.rank:d}, alpha {t.lora.alpha:g}' if t.finetune == 'lora' else 'full fine-tuning'}
- **Alignment**: coefficient {s.alignment.coefficient}, pooling {s.alignment.pooling}, teacher PE
  {'on' if s.alignment.teacher_pe else 'off'}, ensemble {s.alignment.ensemble_size}

| pair | VLA hidden state | teacher layer |
| --- | --- | --- |
{pairs}

## Last metrics
```json
{json.dumps(shown, indent=2)}
```

## Files
`lora_adapter.safetensors` (LoRA), `heads.safetensors` (parts trained in full), `projector.safetensors`
(alignment projector, reference names), `spec.yaml` (the full run spec), `layers.yaml` (layer map), and the
training state (`trainable.safetensors`, `optimizer.pt`, `rng.safetensors`, `state.json`).

## Use
```bash
rocket pull {repo_id}
rocket align --resume hf://{repo_id} --max-steps {t.max_steps + 1000}   # continue training
```
"""


def build_push_folder(checkpoint: Path, out: Path, repo_id: str = "ORG/NAME") -> Path:
    """Assemble the folder `rocket push` uploads: built in a fresh temporary folder next to `out`, then renamed,
    so it is never half-built and no folder this call did not create is ever removed."""
    ckpt = find_checkpoint(checkpoint)
    if out.exists():
        raise RocketError(f"'{out}' already exists; choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name in listed_files(ckpt):  # verified: a corrupt checkpoint is never published
            shutil.copy2(ckpt / name, tmp / name)
        lora, heads = split_trainable(load_state_dict(ckpt / "trainable.safetensors"))  # one line if corrupt
        if lora:
            save_file(lora, str(tmp / "lora_adapter.safetensors"))
        if heads:
            save_file(heads, str(tmp / "heads.safetensors"))
        (tmp / "README.md").write_text(model_card(ckpt, repo_id))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def push_folder(folder: Path, repo_id: str, private: bool = False, revision: str | None = None) -> str:
    """Create the repo if needed and upload the folder; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 commit_message="rocket push")
    except Exception as exc:  # network, auth, permissions: one line with the cause
        raise RocketError(f"cannot push to '{repo_id}': {type(exc).__name__}: {' '.join(str(exc).split())[:300]}; "
                          "check `hf auth login` and the repo name") from None
    return str(getattr(info, "commit_url", info))
