"""Run the trainer on the toy plugins from a subprocess (used by the kill/resume and DDP tests).

    python tests/integration/train_toy.py RUN_DIR MAX_STEPS BATCH_SIZE SAVE_EVERY [RESUME [POOLING]]

RESUME without a checkpoint yet (a kill before the first save) restarts from step 0, as `rocket align` does.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import rocket_plugins.projectors.builtin as builtin_projectors  # noqa: E402
import tests.toy_plugins as toy  # noqa: E402
from rocket_core.engine import plan_run  # noqa: E402
from rocket_core.registry import Registry  # noqa: E402
from rocket_core.specs import build_spec  # noqa: E402
from rocket_core.train.checkpoint import has_checkpoint  # noqa: E402
from rocket_core.train.trainer import Trainer  # noqa: E402


def toy_registry() -> Registry:
    reg = Registry()
    reg.register_module(toy)
    reg.register_module(builtin_projectors)
    return reg


def toy_spec(max_steps: int, batch_size: int, save_every: int, **training: object):  # type: ignore[no-untyped-def]
    return build_spec(None, {
        "vla": {"name": "toy-vla"},
        "teacher": {"name": "toy-teacher"},
        "projector": {"name": "rocket"},
        "training": {"max_steps": max_steps, "batch_size": batch_size, "save_every": save_every,
                     "lora": {"rank": 4, "alpha": 4}, **training},
    })


if __name__ == "__main__":
    run_dir, steps, batch, every = sys.argv[1], *map(int, sys.argv[2:5])
    resume = Path(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    if resume is not None and not has_checkpoint(resume) and not (resume / "manifest.json").is_file():
        resume = None
    pooling = sys.argv[6] if len(sys.argv) > 6 else "bilinear"
    spec = toy_spec(steps, batch, every)
    spec = spec.model_copy(update={"alignment": spec.alignment.model_copy(update={"pooling": pooling})})
    plan = plan_run(spec, toy_registry())
    Trainer(plan, Path(run_dir), resume=resume, progress=False).train()
