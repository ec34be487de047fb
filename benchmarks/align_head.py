"""Alignment head (batched pooling, cached PE, one loss) vs a reference-style per-pair loop.

Both compute the same loss on the same inputs (checked), fwd+bwd, warmed up, interleaved, median of
repeats. Prints where the head's time goes, then `align_head_speedup: X.XX` last.

    python benchmarks/align_head.py [--pairs 10 --llm-dim 4096 --hidden 2048 --teacher-dim 2048 ...]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from plugins.projectors.builtin import RocketProjector
from rocket_core.align.head import AlignmentHead
from rocket_core.align.pooling import pooled_grid, sincos_2d_table
from rocket_core.align.projector import ProjectorBank
from rocket_core.specs import ProjectorSpec

PATCH_START = 5  # VGGT: camera token + 4 registers before the patches


def reference_style_loss(
    bank: ProjectorBank, states: list[torch.Tensor], raw: list[torch.Tensor], grid: tuple[int, int],
    image_hw: tuple[int, int],
) -> torch.Tensor:
    """One pair at a time, as the reference loop does: slice, build the PE, pool, project, loss."""
    losses = []
    for pair, (x, t) in enumerate(zip(states, raw)):
        tokens = t[:, :, PATCH_START:]
        b, s, _, d = tokens.shape
        oh, ow = pooled_grid(s, grid, x.shape[1])
        pe = sincos_2d_table(d, *grid, *image_hw).to(tokens.device)  # rebuilt every call
        frames = tokens.reshape(b * s, *grid, d).permute(0, 3, 1, 2) + 0.1 * pe
        target = F.interpolate(frames, size=(oh, ow), mode="bilinear", align_corners=True)
        target = target.permute(0, 2, 3, 1).reshape(b, s * oh * ow, d)
        per_member = []
        for proj in bank.pool(pair):
            out = proj(x, bank.layer_index(pair))
            cos = (F.normalize(out, dim=-1) * F.normalize(target, dim=-1)).sum(-1)
            per_member.append((1 - cos.mean(-1)).mean())
        losses.append(torch.stack(per_member).mean())
    return torch.stack(losses).mean()


def timed(fn: Callable[[], torch.Tensor], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn().backward()
    sync()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--llm-dim", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--teacher-dim", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--grid", type=int, default=37)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    grid, image_hw = (args.grid, args.grid), (args.grid * 14, args.grid * 14)

    spec = ProjectorSpec(name="rocket", hidden_dim=args.hidden)
    bank = RocketProjector.build(args.pairs, args.llm_dim, args.teacher_dim, spec, 1).to(dev)
    head = AlignmentHead(bank, args.tokens, grid, image_hw)
    states = [torch.randn(args.batch, args.tokens, args.llm_dim, device=dev, requires_grad=True)
              for _ in range(args.pairs)]
    raw = [torch.randn(args.batch, args.frames, PATCH_START + args.grid**2, args.teacher_dim, device=dev)
           for _ in range(args.pairs)]

    def ours() -> torch.Tensor:
        return head(states, [t[:, :, PATCH_START:] for t in raw]).loss

    def baseline() -> torch.Tensor:
        return reference_style_loss(bank, states, raw, grid, image_hw)

    with torch.no_grad():
        a, b = ours(), baseline()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (float(a), float(b))
    print(f"device {dev}, {args.pairs} pairs, llm {args.llm_dim}, hidden {args.hidden}, teacher {args.teacher_dim}, "
          f"{args.frames}x{args.grid}x{args.grid} -> {args.tokens} tokens, batch {args.batch}; "
          f"losses agree: {float(a):.6f} vs {float(b):.6f}")

    for fn in (ours, baseline):  # warm-up
        timed(fn, sync)
    times: dict[str, list[float]] = {"head": [], "per-pair loop": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        times["head"].append(timed(ours, sync))
        times["per-pair loop"].append(timed(baseline, sync))
        bank.zero_grad(set_to_none=True)
        for s in states:
            s.grad = None

    # Where the head's time goes (same inputs): pooling, projection + loss forward, backward.
    phases: dict[str, list[float]] = {"pool targets": [], "project + loss (fwd)": [], "backward": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        targets = head.pool_targets([t[:, :, PATCH_START:] for t in raw])
        sync()
        t1 = time.perf_counter()
        loss = head(states, targets=targets).loss
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
            phases[name].append(dt)

    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:>22}: median {med[name] * 1e3:9.1f} ms  (min {min(values) * 1e3:.1f}, n={len(values)})")
    total = sum(statistics.median(v) for v in phases.values())
    for name, values in phases.items():
        m = statistics.median(values)
        print(f"{'head ' + name:>22}: median {m * 1e3:9.1f} ms  ({100 * m / total:4.1f} %)")
    print(f"align_head_speedup: {med['per-pair loop'] / med['head']:.2f}")


if __name__ == "__main__":
    main()
