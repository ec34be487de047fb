"""OpenVLA's inputs and outputs: pixels, prompt, action tokens and action (un)normalisation.

Pure torch (no torchvision): the reference resizes PIL images with bicubic filtering; here PIL images are
resized with PIL's bicubic and tensors with `F.interpolate(bicubic, antialias=True)`, which is the same
filter family (not bit-equal on uint8 rounding). LIBERO frames arrive at 224 px, so neither runs there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rocket_core.errors import RocketError
from rocket_plugins.vla.openvla.options import BYTE_BASE_VOCAB, BYTE_PAD_ID

# Per fused ViT (DINOv2 first, then SigLIP): the normalisation its timm data config uses.
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIGLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
PROMPT = "In: What action should the robot take to {task}?\nOut:"
LLAMA_EMPTY_TOKEN = 29871  # SentencePiece "▁", which follows "Out:" in every training prompt
STOP_TOKEN = 2
# Instructions are one sentence (LIBERO's longest is ~30 tokens). Unbounded, a 100,000-character task made a
# (T x T) attention mask of tens of GB; refusing it names the task instead.
MAX_PROMPT_TOKENS = 512
NORMALIZATION_TYPES = ("bounds_q99", "bounds")


def _normalise(x: torch.Tensor, mean_std: tuple[Sequence[float], Sequence[float]]) -> torch.Tensor:
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(3, 1, 1) for v in mean_std)
    return (x - mean) / std


def pixel_values(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, n, 3, H, W) in [0, 1] -> (B, 6n, S, S): per image the ImageNet copy, then the SigLIP copy."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise RocketError(f"expected images shaped (B, n_cam, 3, H, W), got {tuple(images.shape)}")
    b, n = images.shape[:2]
    flat = images.reshape(b * n, 3, *images.shape[-2:]).float()
    if flat.shape[-2:] != (image_size, image_size):
        flat = F.interpolate(flat, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
        flat = flat.clamp(0, 1)
    fused = torch.cat([_normalise(flat, IMAGENET_MEAN_STD), _normalise(flat, SIGLIP_MEAN_STD)], dim=1)
    return fused.reshape(b, n * 6, image_size, image_size)


def pil_to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """A PIL image resized like the reference (PIL bicubic, straight to S x S), as (3, S, S) in [0, 1]."""
    resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)


class ByteTokenizer:
    """The tiny preset's tokenizer, so it needs no download: BOS=1, EOS=2, UTF-8 byte b -> 3 + b.

    Like `HFTokenizer` it offers `encode` (BOS first), `pad_token_id` and `empty_token_id`.

    With a 512-id base vocabulary the 256 action ids (256..511) never collide with a byte (UTF-8 bytes
    stay below 0xF5, i.e. ids below 248).
    """

    base_vocab = BYTE_BASE_VOCAB
    pad_token_id = BYTE_PAD_ID
    bos_token_id = 1
    empty_token_id = 3 + ord(" ")

    def encode(self, text: str) -> list[int]:
        return [self.bos_token_id] + [3 + b for b in text.encode("utf-8")]


class HFTokenizer:
    """A transformers tokenizer (the checkpoint's Llama-2 tokenizer) behind the `TextTokenizer` interface."""

    empty_token_id = LLAMA_EMPTY_TOKEN

    def __init__(self, tokenizer: Any, pad_token_id: int) -> None:
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])


def prompt_ids(tokenizer: ByteTokenizer | HFTokenizer, task: str) -> list[int]:
    """BOS + "In: What action should the robot take to {task}?\\nOut:" + the empty token, as at training time."""
    ids = tokenizer.encode(PROMPT.format(task=task.lower().strip()))
    if len(ids) > MAX_PROMPT_TOKENS:
        raise RocketError(f"the task '{task[:40]}...' ({len(task):,} characters) is {len(ids):,} prompt tokens; OpenVLA "
                          f"prompts are limited to {MAX_PROMPT_TOKENS} tokens: shorten the task text")
    return ids if ids[-1] == tokenizer.empty_token_id else ids + [tokenizer.empty_token_id]


@dataclass(frozen=True)
class ActionTokenizer:
    """256 uniform bins on [-1, 1] mapped onto the last ids of the (unpadded) vocabulary.

    Encoding digitises against the 256 bin edges (ids vocab-1 .. vocab-256); decoding maps id -> one of
    the 255 bin centres with `clip(vocab - id - 1, 0, 254)`, as OpenVLA does.
    """

    vocab_size: int
    n_bins: int = 256

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-1.0, 1.0, self.n_bins)

    @property
    def centres(self) -> np.ndarray:
        e = self.edges
        return (e[:-1] + e[1:]) / 2.0

    @property
    def begin(self) -> int:
        """Ids above this are action tokens."""
        return self.vocab_size - self.n_bins - 1

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions (any shape, clipped to [-1, 1]) -> token ids of the same shape."""
        digit = np.digitize(np.clip(actions.detach().cpu().double().numpy(), -1.0, 1.0), self.edges)
        return torch.from_numpy(self.vocab_size - digit).long()

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> normalised actions (bin centres), float32."""
        index = np.clip(self.vocab_size - ids.detach().cpu().numpy() - 1, 0, self.n_bins - 2)
        return torch.from_numpy(self.centres[index]).float()


def dataset_stats(norm_stats: Mapping[str, Any], unnorm_key: str | None) -> Mapping[str, Any]:
    """The statistics of one dataset key; the only key when there is one, else `unnorm_key` must name it."""
    if not norm_stats:
        raise RocketError("this checkpoint has no norm_stats; actions can only be returned normalised")
    if unnorm_key is None:
        if len(norm_stats) != 1:
            raise RocketError("the checkpoint has statistics for several datasets; set options.unnorm_key to one of: "
                              f"{', '.join(sorted(norm_stats))}")
        unnorm_key = next(iter(norm_stats))
    if unnorm_key not in norm_stats:
        raise RocketError(f"unnorm_key '{unnorm_key}' is not in the checkpoint's norm_stats; use one of: {', '.join(sorted(norm_stats))}")
    return norm_stats[unnorm_key]


def _bounds(stats: Mapping[str, Any], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if kind not in NORMALIZATION_TYPES:
        raise RocketError(f"unknown normalisation '{kind}'; use one of: {', '.join(NORMALIZATION_TYPES)}")
    low, high = ("q01", "q99") if kind == "bounds_q99" else ("min", "max")
    lo, hi = np.asarray(stats[low], dtype=np.float64), np.asarray(stats[high], dtype=np.float64)
    mask = np.asarray(stats.get("mask", np.ones_like(lo, dtype=bool)), dtype=bool)
    return lo, hi, mask


def unnormalize(values: np.ndarray | torch.Tensor, stats: Mapping[str, Any], kind: str = "bounds_q99") -> np.ndarray:
    """[-1, 1] -> the dataset's units on masked-in dimensions; masked-out ones (e.g. the gripper) pass through."""
    lo, hi, mask = _bounds(stats, kind)
    x = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return np.where(mask, 0.5 * (x + 1.0) * (hi - lo + 1e-8) + lo, x)


def normalize(values: np.ndarray | torch.Tensor, stats: Mapping[str, Any], kind: str = "bounds_q99") -> np.ndarray:
    """The inverse of `unnormalize`, clipped to [-1, 1] (how OFT feeds raw proprio at evaluation)."""
    lo, hi, mask = _bounds(stats, kind)
    x = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return np.where(mask, np.clip(2.0 * (x - lo) / (hi - lo + 1e-8) - 1.0, -1.0, 1.0), x)
