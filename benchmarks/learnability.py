"""Can a VLA preset learn to see where a thing is? A synthetic localisation probe (issue 21).

Every camera shows a plain table with one red square at a random place; the first two action dims of the
whole chunk are the square's centre in [-1, 1], the others 0. Two learners train side by side in one
process, from the same seed, on the same batches:

- `vla`: the VLA itself through the training contract (`forward_align`'s action loss), evaluated with
  `predict_action` on a held-out batch;
- `readout`: a linear map from the VLA's own vision tokens as its language model receives them (hidden
  layer 0 of `forward_align`) to the two numbers, with the VLA's weights trained by the same loss.

The readout shows the information is in the tokens; the VLA path shows whether the model can route it to
its action outputs. Chance (predicting 0) is an L1 of 0.5. On the tiny OpenVLA, a square that covers most
of a 14-px patch is read by the linear map within ~150 steps while the VLA path stays at chance for 1000
steps; see docs/data.md ("Why the tiny models learn slowly").

    python benchmarks/learnability.py                          # tiny OpenVLA, 28-px square at 128 px
    python benchmarks/learnability.py --square 8 --steps 1000  # the size of a `blocks` block
Prints the two curves, writes `learnability.png` under `--out`, and ends with `vla_xy_l1:` and
`readout_xy_l1:` (the held-out L1 of the last evaluation).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE, RED = (196, 176, 146), (210, 40, 40)
SIZE = 128  # camera pixels; each VLA resizes to its own input size
TASK = "put the red block on the green plate"


def scenes(n: int, square: int, cameras: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, cameras, 3, SIZE, SIZE) images in [0, 1] and (n, 2) square centres in [-1, 1]."""
    centre = torch.rand(n, 2, generator=generator) * 2 - 1
    images = torch.tensor(TABLE, dtype=torch.float32).view(1, 1, 3, 1, 1).repeat(n, cameras, 1, SIZE, SIZE) / 255
    free = SIZE - square
    for i, (x, y) in enumerate(centre.tolist()):
        left, top = round((x + 1) / 2 * free), round((1 - y) / 2 * free)
        images[i, :, :, top : top + square, left : left + square] = torch.tensor(RED).view(3, 1, 1) / 255
    return images, centre


def batch_for(images: torch.Tensor, centre: torch.Tensor, info: Any) -> dict[str, Any]:
    """A training batch in the contract's format: the centre in action dims 0-1 of every chunk step."""
    n, chunk, dim = images.shape[0], info.chunk_size or 1, info.action_dim or 7
    actions = torch.zeros(n, chunk, dim)
    actions[..., :2] = centre[:, None]
    return {"images": images, "image_masks": torch.ones(n, images.shape[1], dtype=torch.bool),
            "state": torch.zeros(n, info.state_dim or 8), "actions": actions,
            "action_is_pad": torch.zeros(n, chunk, dtype=torch.bool), "task": [TASK] * n}


def build(vla: str, seed: int) -> tuple[Any, Any]:
    """The VLA at its tiny preset as `rocket align --finetune full` builds it, and its `VLAInfo`."""
    from rocket_core.engine import plan_run
    from rocket_core.specs import build_spec
    from rocket_core.train.build import build_module

    spec = build_spec(overrides={
        "vla": {"name": vla, "preset": "tiny"}, "teacher": {"name": "vggt", "preset": "tiny"},
        "projector": {"name": "rocket"}, "alignment": {"coefficient": 0},
        "training": {"finetune": "full", "seed": seed},
    })
    plan = plan_run(spec)
    model = build_module(plan).vla
    return model, plan.vla_info


def train(args: argparse.Namespace) -> dict[str, list[tuple[int, float]]]:
    """Both learners, step by step on shared batches; held-out L1 of the centre every `--eval-every` steps."""
    curves: dict[str, list[tuple[int, float]]] = {"vla": [], "readout": []}
    models = {name: build(args.vla, args.seed) for name in curves}
    info = models["vla"][1]
    readout = torch.nn.Linear(info.num_vision_tokens * info.hidden_size, 2)
    optimisers = {name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad]
                                          + (list(readout.parameters()) if name == "readout" else []),
                                          lr=args.lr, weight_decay=0.0)
                  for name, (m, _) in models.items()}
    data = torch.Generator().manual_seed(args.seed)
    held_out = batch_for(*scenes(64, args.square, info.num_images, torch.Generator().manual_seed(args.seed + 1)), info)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = batch_for(*scenes(args.batch_size, args.square, info.num_images, data), info)
        for name, (model, _) in models.items():
            model.train()
            if name == "vla":
                loss = model.forward_align(batch, []).action_loss
            else:
                tokens = model.forward_align(batch, [0]).vision_states[0]
                loss = (readout(tokens.flatten(1)) - batch["actions"][:, 0, :2]).abs().mean()
            optimisers[name].zero_grad()
            loss.backward()
            optimisers[name].step()
        if step % args.eval_every == 0 or step == args.steps:
            target = held_out["actions"][:, 0, :2]
            with torch.no_grad():
                vla, _ = models["vla"]
                vla.eval()
                curves["vla"].append((step, (vla.predict_action(held_out)[:, 0, :2] - target).abs().mean().item()))
                probe, _ = models["readout"]
                probe.eval()
                tokens = probe.forward_align(held_out, [0]).vision_states[0]
                curves["readout"].append((step, (readout(tokens.flatten(1)) - target).abs().mean().item()))
            print(f"[{time.perf_counter() - start:6.0f} s] step {step:5d}: held-out L1 vla "
                  f"{curves['vla'][-1][1]:.3f}, readout {curves['readout'][-1][1]:.3f} (chance 0.5)", flush=True)
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vla", default="openvla", help="VLA plugin, at its tiny preset")
    parser.add_argument("--square", type=int, default=28, help="side of the square in camera pixels (of 128)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/learnability"))
    args = parser.parse_args()
    from rocket_core.analysis.plots import step_curves

    torch.manual_seed(args.seed)
    curves = train(args)
    step_curves(args.out / "learnability.png", curves, f"tiny {args.vla}: {args.square}-px square",
                "held-out L1 of the square's centre", (0, 0.7), reference=("chance", 0.5))
    print(f"curve: {args.out / 'learnability.png'}")
    print(f"vla_xy_l1: {curves['vla'][-1][1]:.3f}")
    print(f"readout_xy_l1: {curves['readout'][-1][1]:.3f}")


if __name__ == "__main__":
    main()
