"""pi0 / pi0.5 prompt tokenisation: the PaliGemma tokenizer, or a byte tokenizer for the tiny preset."""
from __future__ import annotations

from typing import Any

import torch

from rocket_core.errors import RocketError


class ByteTokenizer:
    """Offline stand-in for the tiny preset: UTF-8 bytes + 2 (0 = pad, 1 = BOS). Needs vocab >= 258."""

    padding_side = "right"

    def __call__(self, texts: list[str], max_length: int, **_: Any) -> dict[str, torch.Tensor]:
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), max_length, dtype=torch.bool)
        for row, text in enumerate(texts):
            seq = [1, *(b + 2 for b in text.encode())][:max_length]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        return {"input_ids": ids, "attention_mask": mask}


def load_tokenizer(name: str) -> Any:
    """The PaliGemma tokenizer (right padding), `bytes` for the built-in one, or a clear line saying what to do."""
    if name == "bytes":
        return ByteTokenizer()
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        gated = "gated" in str(exc).lower() or "401" in str(exc) or "403" in str(exc)
        why = "it is gated: accept its licence on huggingface.co and run `hf auth login`" if gated else \
            "it is not cached locally (HF_HUB_OFFLINE?): accept its licence on huggingface.co, run " \
            "`hf auth login`, and run once online"
        raise RocketError(
            f"cannot load tokenizer '{name}': {why}; or set the VLA option tokenizer=<local folder>"
        ) from None
    tok.padding_side = "right"
    return tok


def tokenize(tokenizer: Any, texts: list[str], max_len: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    out = tokenizer(texts, max_length=max_len, padding="max_length", truncation=True, return_tensors="pt")
    return out["input_ids"].to(device), out["attention_mask"].to(device).bool()


