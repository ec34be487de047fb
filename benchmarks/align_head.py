"""The alignment head against the reference-style per-pair autograd loop and a GEMM-only floor.

All three do the same work on the same inputs (forward + backward of 10 pairs at paper size by default):
the head pools the teacher layers and runs its fused projection + loss; the loop slices, adds the
positional embedding, pools, projects and takes the loss one pair at a time through autograd, as the
reference does; the floor runs only the six GEMMs per pair that any implementation needs. The loss and
every gradient of the head are checked against the loop first.

On a CPU the time is the process's CPU time (one intra-op thread by default, `--threads`): on a shared
machine other processes change wall time far more than the work done. What they still change is memory
bandwidth, and the head's non-GEMM work (LayerNorm, pooling, activation, cosine) is memory-bound while
the GEMM floor is not, so the copy bandwidth is printed beside the load average: head_vs_floor rises
when it drops. Each repetition runs all three in a rotating order with gradients zeroed before every
call; each ratio is taken within a repetition and the median and spread of those paired ratios are
printed (12 repetitions by default: one call's CPU time varies by about 2 % here). Peak extra memory of
one call of each is measured
in a child process (resident-set high-water mark; large allocations go straight to the OS), or with the
CUDA allocator's statistics on a GPU, where the head and the loop run under the trainer's bf16 autocast.
Prints `head_vs_floor` (target <= 1.10) and `align_head_speedup` (target >= 1.15) last.

    python benchmarks/align_head.py [--pairs 10 --llm-dim 4096 --hidden 2048 --teacher-dim 2048 --tokens 512 ...]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rocket_core.align.head import AlignmentHead  # noqa: E402
from rocket_core.align.pooling import pooled_grid, sincos_2d_table  # noqa: E402
from rocket_core.align.projector import ProjectorBank  # noqa: E402
from rocket_core.specs import ProjectorSpec  # noqa: E402
from rocket_plugins.projectors.builtin import RocketProjector  # noqa: E402

PATCH_START = 5  # VGGT: camera token + 4 registers before the patches
# max |diff| / max |loop gradient|. The gate on a CPU runs in float64, where the two differ only by
# summation order (~1e-15), so a stray low-precision step shows; the bound (1e-6) is for float32,
# where summation order alone reaches ~1e-6 at 1024 tokens. bf16 (GPU): its rounding.
GRAD_TOL = {torch.float64: 1e-10, torch.float32: 1e-6, torch.bfloat16: 5e-2}


class Setup:
    """Inputs, the projector bank and the three callables of one configuration."""

    def __init__(self, args: argparse.Namespace) -> None:
        torch.manual_seed(0)
        self.dev = dev = torch.device(args.device)
        self.grid, self.image_hw = (args.grid, args.grid), (args.grid * 14, args.grid * 14)
        self.ref_len = args.tokens
        oh, ow = pooled_grid(args.frames, self.grid, args.tokens)
        self.tokens = args.frames * oh * ow  # what pooling yields (242 for --tokens 256): the states match it
        spec = ProjectorSpec(name="rocket", hidden_dim=args.hidden)
        self.bank = RocketProjector.build(args.pairs, args.llm_dim, args.teacher_dim, spec, args.ensemble).to(dev)
        self.head = AlignmentHead(self.bank, args.tokens, self.grid, self.image_hw)
        self.states = [torch.randn(args.batch, self.tokens, args.llm_dim, device=dev, requires_grad=True)
                       for _ in range(args.pairs)]
        self.raw = [torch.randn(args.batch, args.frames, PATCH_START + args.grid**2, args.teacher_dim, device=dev)
                    for _ in range(args.pairs)]
        # the trainer's autocast on a GPU (bf16), none on a CPU
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" \
            else contextlib.nullcontext
        self.dtype = torch.bfloat16 if dev.type == "cuda" else torch.get_default_dtype()
        self._floor_inputs()

    def zero_grad(self) -> None:
        self.bank.zero_grad(set_to_none=True)
        for s in self.states:
            s.grad = None

    def head_loss(self) -> torch.Tensor:
        with self.autocast():
            return self.head(self.states, [t[:, :, PATCH_START:] for t in self.raw]).loss

    def loop_loss(self) -> torch.Tensor:
        with self.autocast():
            return reference_style_loss(self.bank, self.states, self.raw, self.grid, self.image_hw, self.ref_len)

    def _floor_inputs(self) -> None:
        """Operands and preallocated outputs of every GEMM of every (pair, member), in the compute dtype."""
        cast = {id(p): p.detach().to(self.dtype) for p in self.bank.parameters()}
        self.gemms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for pair, x in enumerate(self.states):
            x2 = x.detach().reshape(-1, x.shape[-1]).to(self.dtype)
            for proj in self.bank.pool(pair):
                w = proj.width(self.bank.layer_index(pair))
                w1, w2 = cast[id(proj.fc1.weight)][:w], cast[id(proj.fc2.weight)][:, :w]
                rows = x2.shape[0]
                h, p = x2.new_empty(rows, w), x2.new_empty(rows, w2.shape[0])
                dw1, dw2, dx = torch.empty_like(w1), torch.empty_like(w2), torch.empty_like(x2)
                self.gemms += [(x2, w1.t(), h), (h, w2.t(), p),  # forward: fc1, fc2
                               (p.t(), h, dw2), (p, w2, h.clone()),  # backward: fc2 weight, fc2 input
                               (h.t(), x2, dw1), (h, w1, dx)]  # backward: fc1 weight, fc1 input

    def floor(self) -> None:
        for a, b, out in self.gemms:
            torch.mm(a, b, out=out)


def reference_style_loss(
    bank: ProjectorBank, states: list[torch.Tensor], raw: list[torch.Tensor], grid: tuple[int, int],
    image_hw: tuple[int, int], ref_len: int,
) -> torch.Tensor:
    """One pair at a time, as the reference loop does: slice, build the PE on the device, pool, project, loss."""
    losses = []
    for pair, (x, t) in enumerate(zip(states, raw)):
        tokens = t[:, :, PATCH_START:]
        b, s, _, d = tokens.shape
        oh, ow = pooled_grid(s, grid, ref_len)
        pe = sincos_2d_table(d, *grid, *image_hw, device=tokens.device).to(tokens.dtype)  # rebuilt every call
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


def fwd_bwd(loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    return lambda: loss().backward()


def gradients(setup: Setup, loss: Callable[[], torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    setup.zero_grad()
    value = loss()
    value.backward()
    grads = {n: p.grad.detach().double() for n, p in setup.bank.named_parameters()}
    grads.update({f"state.{i}": s.grad.detach().double() for i, s in enumerate(setup.states)})
    return float(value.detach()), grads


def compare(setup: Setup) -> tuple[bool, str]:
    """Loss and every gradient of the head against the loop: (within tolerance, one line of numbers)."""
    head_loss, head = gradients(setup, setup.head_loss)
    loop_loss, loop = gradients(setup, setup.loop_loss)
    worst = max(float((head[k] - loop[k]).abs().max() / loop[k].abs().max().clamp_min(1e-30)) for k in loop)
    tol = GRAD_TOL[setup.dtype]
    ok = abs(head_loss - loop_loss) <= 10 * tol and worst <= tol and set(head) == set(loop)
    return ok, (f"{str(setup.dtype).removeprefix('torch.')}: loss head {head_loss:.7f} loop {loop_loss:.7f}; "
                f"{len(loop)} gradients, worst max|diff|/max|loop| {worst:.1e} (tolerance {tol:.0e})")


def check(setup: Setup, args: argparse.Namespace) -> None:
    """The gate: on a CPU the same configuration in float64 (what differs there is the math, not rounding);
    the float32 comparison of the timed setup is printed beside it. On a GPU: the bf16 autocast run."""
    ok, line = compare(setup)
    if setup.dev.type == "cpu":
        torch.set_default_dtype(torch.float64)
        try:
            ok, exact = compare(Setup(args))
        finally:
            torch.set_default_dtype(torch.float32)
        line = f"{exact}; {line}"
    print(f"check: {line}: {'pass' if ok else 'FAIL'}")
    if not ok:
        raise SystemExit("the head does not match the per-pair loop")


def synchronize(dev: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it; nothing to wait for on a CPU."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], None], setup: Setup) -> float:
    """Seconds of one call: process CPU time on a CPU, synchronised wall time on a GPU."""
    setup.zero_grad()
    cuda = setup.dev.type == "cuda"
    synchronize(setup.dev)
    start = time.perf_counter() if cuda else time.process_time()
    fn()
    synchronize(setup.dev)
    return (time.perf_counter() if cuda else time.process_time()) - start


def peak_extra_bytes(setup: Setup, variant: str) -> int:
    """High-water mark above the live memory before one forward + backward of `variant`."""
    fn = {"head": fwd_bwd(setup.head_loss), "loop": fwd_bwd(setup.loop_loss)}[variant]
    setup.zero_grad()
    if setup.dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    def rss(key: str) -> int:
        lines = Path("/proc/self/status").read_text().splitlines()
        return int(next(ln.split()[1] for ln in lines if ln.startswith(key))) * 1024

    base = rss("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM) to the current RSS
    fn()
    return rss("VmHWM:") - base


def memory_in_child(args: argparse.Namespace, variant: str) -> int:
    """Run `peak_extra_bytes` in a fresh process: RSS then reflects exactly what this variant allocates."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    argv = [sys.executable, __file__, *sys.argv[1:], "--memory-of", variant]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_extra_bytes"])


def copy_bandwidth(dev: torch.device, mib: int = 256) -> float:
    """GB/s of a large copy, best of three: on a shared machine other tenants' memory traffic lowers it, and
    the head's non-GEMM work is memory-bound, so head_vs_floor rises with it while the GEMM floor does not."""
    src = torch.ones(mib * 2**18, device=dev)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(3):
        synchronize(dev)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(dev)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best / 1e9


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}, n={len(values)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--llm-dim", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--teacher-dim", type=int, default=2048)
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--grid", type=int, default=37)
    ap.add_argument("--tokens", type=int, default=512, help="the VLA's vision tokens (pooling reference length)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=12,
                    help="repetitions of all three (a multiple of 3 gives each variant each position equally)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: CPU time = work done)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--memory-of", choices=("head", "loop"), help=argparse.SUPPRESS)  # child process mode
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = Setup(args)
    if args.memory_of:
        print(json.dumps({"peak_extra_bytes": peak_extra_bytes(setup, args.memory_of)}))
        return

    load_before, bandwidth_before = os.getloadavg(), copy_bandwidth(setup.dev)
    print(f"device {setup.dev}, {torch.get_num_threads()} thread(s), {args.pairs} pairs x {args.ensemble} member(s), "
          f"llm {args.llm_dim}, hidden {args.hidden}, teacher {args.teacher_dim}, {args.frames}x{args.grid}x{args.grid} "
          f"patches -> {setup.tokens} tokens (reference length {args.tokens}), batch {args.batch}, "
          f"{'bf16 autocast' if setup.dev.type == 'cuda' else 'float32'}")
    check(setup, args)
    variants = {"head": fwd_bwd(setup.head_loss), "loop": fwd_bwd(setup.loop_loss), "floor": setup.floor}
    for fn in variants.values():  # warm-up
        timed(fn, setup)
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for rep in range(args.repeats):
        for name in names[rep % 3 :] + names[: rep % 3]:  # rotating order: drift hits every variant alike
            times[name].append(timed(variants[name], setup))
        print(f"repetition {rep + 1}/{args.repeats}: head/floor {times['head'][-1] / times['floor'][-1]:.3f}, "
              f"loop/head {times['loop'][-1] / times['head'][-1]:.3f}", file=sys.stderr, flush=True)
    unit = "wall s (synchronised)" if setup.dev.type == "cuda" else "CPU s"
    for name, label in (("head", "fused head"), ("loop", "per-pair loop"), ("floor", "GEMM-only floor")):
        print(f"{label:>16}: {spread(times[name])} {unit}")
    speedup = [lp / hd for lp, hd in zip(times["loop"], times["head"])]
    vs_floor = [hd / fl for hd, fl in zip(times["head"], times["floor"])]
    print(f"paired loop/head: {spread(speedup)}")
    print(f"paired head/floor: {spread(vs_floor)}")
    if setup.dev.type == "cuda":
        head_mem, loop_mem = peak_extra_bytes(setup, "head"), peak_extra_bytes(setup, "loop")
    else:
        head_mem, loop_mem = memory_in_child(args, "head"), memory_in_child(args, "loop")
    print(f"peak extra memory: head {head_mem / 2**30:.3f} GiB, loop {loop_mem / 2**30:.3f} GiB "
          f"(head/loop {head_mem / loop_mem:.2f})")
    print(f"load average: {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (1 min); "
          f"copy bandwidth: {bandwidth_before:.1f} GB/s before, {copy_bandwidth(setup.dev):.1f} GB/s after")
    print(f"head_vs_floor: {statistics.median(vs_floor):.3f}")
    print(f"align_head_speedup: {statistics.median(speedup):.3f}")


if __name__ == "__main__":
    main()
