"""Streamed linear CKA: exact when every sample's features fit in memory, a seeded CountSketch otherwise.

Exact linear CKA needs the n x n Gram `X Xᵀ` of every sample's flattened features, and that Gram cannot be
summed over sample minibatches. At paper scale (2048 samples x 57 layers x 1-2 M features) the features
take hundreds of GB. The sketch path maps each sample's features `x ∈ R^F` to `R x ∈ R^d` while they
stream, and CKA is computed on the Grams of the sketches.

`R` is a CountSketch: feature f goes to bucket `h(f) ∈ [0, d)` with sign `s(f) = ±1`, so `E[RᵀR] = I` and
`<Rx, Ry>` is an unbiased estimate of `<x, y>` with variance about `(|x|²|y|² + <x,y>²) / d`, the same as a
dense Gaussian projection. `h` and `s` are drawn in fixed column blocks from a generator seeded by
`(seed, block)`, so `R` is never materialised: memory is one block (768 KB), however many tokens a layer
has. Every sample and layer sees the same `R`; each block is drawn once per batch for all layers.

Because `R` is linear and the same for every sample, centring the sketches over samples equals
sketching the centred features: the sketch's error scales with the centred features' norms, not with
a large common mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from rocket_core.select.cka import centred_gram, cka_from_grams

Method = Literal["auto", "exact", "sketch"]
BYTES = 4  # features and sketches are stored in float32


class CountSketch:
    """The linear map `R: R^F -> R^d` (any F), applied to (B, F) rows without ever building `R`."""

    def __init__(self, dim: int, seed: int = 0, block: int = 1 << 16) -> None:
        if dim < 1:
            raise ValueError("the sketch dimension must be at least 1")
        self.dim, self.seed, self.block = dim, seed, block

    def _hash(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Bucket (int64) and sign (float32 ±1) of columns `j*block ... (j+1)*block - 1`, on the CPU."""
        state = np.random.SeedSequence([0x5EED, self.seed, j]).generate_state(1, dtype=np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        bucket = torch.randint(self.dim, (self.block,), generator=gen)
        sign = torch.randint(2, (self.block,), generator=gen).float().mul_(2).sub_(1)
        return bucket, sign

    @torch.no_grad()
    def apply_many(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, ...)] -> [(B, d)] float32 on each input's device; each block of `R` is drawn once for all."""
        flat = [x.reshape(x.shape[0], -1) for x in xs]
        outs = [torch.zeros(x.shape[0], self.dim, device=x.device, dtype=torch.float32) for x in flat]
        width = max((x.shape[1] for x in flat), default=0)
        for j, start in enumerate(range(0, width, self.block)):
            cpu = self._hash(j)
            on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
            for x, out in zip(flat, outs):
                if start >= x.shape[1]:
                    continue
                if x.device not in on:
                    on[x.device] = (cpu[0].to(x.device), cpu[1].to(x.device))
                bucket, sign = on[x.device]
                chunk = x[:, start : start + self.block].float()
                n = chunk.shape[1]
                out.index_add_(1, bucket[:n], chunk * sign[:n])
        return outs

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, d) float32, on x's device."""
        return self.apply_many([x])[0]


@dataclass(frozen=True)
class GramSet:
    """Centred Grams (float64, n x n) of every fed key, and how they were obtained."""

    grams: dict[Hashable, torch.Tensor]
    method: str  # "exact" or "sketch"
    sketch_dim: int | None
    features: dict[Hashable, int]  # flattened features per sample of every key

    def cka(self, rows: Iterable[Hashable], cols: Iterable[Hashable]) -> np.ndarray:
        cols = list(cols)
        return np.array([[cka_from_grams(self.grams[r], self.grams[c]) for c in cols] for r in rows])


class StreamedCKA:
    """Collect per-sample features of several layers batch by batch; `finish()` gives their centred Grams.

    `method="auto"` keeps the features (exact CKA) when `num_samples x sum(features) x 4 bytes` fits
    `memory_budget` bytes, and sketches them otherwise; "exact" and "sketch" force one path. The decision
    is taken at the first batch, from its shapes. Storage is float32 on the CPU: n x F per key (exact) or
    n x d per key (sketch, independent of the token count).
    """

    def __init__(
        self,
        num_samples: int,
        method: Method = "auto",
        sketch_dim: int = 8192,
        memory_budget: float = 4e9,
        seed: int = 0,
    ) -> None:
        if method not in ("auto", "exact", "sketch"):
            raise ValueError(f"unknown CKA method '{method}'; use auto, exact or sketch")
        self.num_samples, self.requested, self.budget = num_samples, method, memory_budget
        self.sketch = CountSketch(sketch_dim, seed)
        self.method: str | None = None
        self.store: dict[Hashable, torch.Tensor] = {}
        self.features: dict[Hashable, int] = {}
        self.filled = 0

    @staticmethod
    def exact_bytes(num_samples: int, features: Mapping[Hashable, int]) -> int:
        return num_samples * sum(features.values()) * BYTES

    def _decide(self, batch: Mapping[Hashable, torch.Tensor]) -> None:
        self.features = {k: int(np.prod(v.shape[1:])) for k, v in batch.items()}
        if self.requested == "auto":
            fits = self.exact_bytes(self.num_samples, self.features) <= self.budget
            self.method = "exact" if fits else "sketch"
        else:
            self.method = self.requested
        exact = self.method == "exact"
        self.store = {k: torch.zeros(self.num_samples, self.features[k] if exact else self.sketch.dim) for k in batch}

    @torch.no_grad()
    def add(self, batch: Mapping[Any, torch.Tensor]) -> None:  # Any: Mapping's key type is invariant
        """Features of the next B samples: `{key: (B, ...)}`, the same keys and shapes at every call."""
        if self.method is None:
            self._decide(batch)
        if set(batch) != set(self.store):
            raise ValueError(f"every batch must carry the same keys; expected {sorted(map(str, self.store))}")
        size = next(iter(batch.values())).shape[0]
        end = self.filled + size
        if end > self.num_samples:
            raise ValueError(f"more samples than announced ({end} > {self.num_samples})")
        keys = list(batch)
        flat = [batch[k].reshape(size, -1) for k in keys]
        for key, x in zip(keys, flat):
            if x.shape[1] != self.features[key]:
                raise ValueError(f"{key}: {x.shape[1]} features per sample, the first batch had {self.features[key]}")
        rows = [x.float() for x in flat] if self.method == "exact" else self.sketch.apply_many(flat)
        for key, row in zip(keys, rows):
            self.store[key][self.filled : end] = row.cpu()
        self.filled = end

    def finish(self) -> GramSet:
        if self.filled != self.num_samples:
            raise ValueError(f"only {self.filled} of {self.num_samples} samples were added")
        grams = {}
        for key in list(self.store):
            grams[key] = centred_gram(self.store.pop(key))  # free each store as soon as its Gram exists
        return GramSet(grams, self.method or self.requested, self.sketch.dim if self.method == "sketch" else None,
                       dict(self.features))
