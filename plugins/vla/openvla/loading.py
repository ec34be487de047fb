"""Building an openvla model: its config (preset, local folder, HF cache, or the 7B's) and its weights.

A full checkpoint folder loads as is; a folder with only `lora_adapter/` loads `options.base_checkpoint`
underneath it; `*checkpoint.pt` parts fill the OFT heads (and ROCKET's projectors, when present).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from rocket_core.errors import RocketError
from rocket_core.hub import resolve_weights
from rocket_core.specs import VLASpec
from rocket_plugins.vla.openvla import processor as proc
from rocket_plugins.vla.openvla.modeling import OpenVLAConfig
from rocket_plugins.vla.openvla.options import ALLOW_PATTERNS, DEFAULT_CHECKPOINT, LORA_DIR, OpenVLAOptions
from rocket_plugins.vla.openvla.policy import OpenVLAPolicy, upcast_lora
from rocket_plugins.vla.openvla.shapes import hf_config
from rocket_plugins.vla.openvla.weights import (
    find_part_file,
    load_lora_adapter,
    load_openvla_weights,
    load_part,
    read_part,
    shard_files,
)


def model_config(spec: VLASpec, opts: OpenVLAOptions, config: dict[str, Any] | None = None) -> OpenVLAConfig:
    return OpenVLAConfig.from_hf(config or hf_config(spec), attn_implementation=opts.attn_implementation)


def _dtype(opts: OpenVLAOptions, preset: bool) -> torch.dtype:
    name = opts.dtype or ("float32" if preset else "bfloat16")
    return getattr(torch, name)


def _tokenizer(folders: Sequence[Path], cfg: OpenVLAConfig) -> proc.HFTokenizer | proc.ByteTokenizer:
    """The checkpoint's tokenizer; a saved tiny model (byte vocabulary, no tokenizer files) gets the byte one."""
    from transformers import AutoTokenizer

    for folder in folders:
        if (folder / "tokenizer_config.json").is_file():
            return proc.HFTokenizer(AutoTokenizer.from_pretrained(str(folder)), cfg.text.pad_token_id)  # type: ignore[arg-type]  # set for LLaMA
    if cfg.action_vocab_size == proc.ByteTokenizer.base_vocab and cfg.text.pad_token_id == proc.ByteTokenizer.pad_token_id:
        return proc.ByteTokenizer()
    raise RocketError(f"no tokenizer files (tokenizer_config.json) in {', '.join(map(str, folders))}; use a full OpenVLA checkpoint folder")


def _has_model_weights(folder: Path) -> bool:
    try:
        return bool(shard_files(folder))
    except RocketError:
        return False


def _load_from(spec: VLASpec, opts: OpenVLAOptions) -> OpenVLAPolicy:
    """Base weights (this folder, or options.base_checkpoint under a LoRA-only folder), then LoRA and heads."""
    folder = resolve_weights(spec.checkpoint or DEFAULT_CHECKPOINT, spec.revision, ALLOW_PATTERNS, "openvla")
    if not folder.is_dir():
        raise RocketError(f"OpenVLA checkpoint '{folder}' must be a folder (config.json + safetensors)")
    base = folder
    if not _has_model_weights(folder):
        if not (folder / LORA_DIR).is_dir():
            raise RocketError(f"'{folder}' holds neither OpenVLA weights nor a {LORA_DIR}/ folder")
        base = resolve_weights(opts.base_checkpoint, None, ALLOW_PATTERNS, "openvla")
    if not (base / "config.json").is_file():
        raise RocketError(f"'{base}' has no config.json; point the checkpoint at a full OpenVLA folder")
    base_config = json.loads((base / "config.json").read_text())
    cfg = model_config(spec, opts, base_config)
    stats = folder / "dataset_statistics.json"
    if stats.is_file():
        cfg.norm_stats = {**cfg.norm_stats, **json.loads(stats.read_text())}
    dtype = _dtype(opts, preset=False)
    with torch.device("meta"):
        model = OpenVLAPolicy(cfg, opts, _tokenizer([folder, base], cfg))
    load_openvla_weights(model, base, dtype)
    rotary = type(model.language_model.model.rotary_emb)
    model.language_model.model.rotary_emb = rotary(cfg.text)  # non-persistent buffers: rebuilt, never loaded
    if base != folder:
        model.lora = load_lora_adapter(model, folder / LORA_DIR)
        upcast_lora(model)
    model.add_oft_parts()
    for part in model.fully_trained_modules:
        module = getattr(model, part)
        path = find_part_file(folder, part, opts.checkpoint_step)
        if module is not None and path is not None:
            load_part(module, path)
    align = find_part_file(folder, "align_projectors", opts.checkpoint_step)
    if align is not None:
        model.align_projectors_state = read_part(align)
    meta = [n for n, t in model.state_dict().items() if t.is_meta]
    if meta:
        raise RocketError(f"OpenVLA weights left unset: {', '.join(meta[:5])}")
    return model


def build(spec: VLASpec, opts: OpenVLAOptions) -> OpenVLAPolicy:
    """A preset's random model or the checkpoint's, every parameter with `requires_grad` as created."""
    if spec.preset is None:
        return _load_from(spec, opts)
    model = OpenVLAPolicy(model_config(spec, opts), opts, proc.ByteTokenizer())
    model.add_oft_parts()
    model = model.to(_dtype(opts, preset=True))
    if model.proprio_projector is not None and opts.proprio_fp32:
        model.proprio_projector.float()
    return model
