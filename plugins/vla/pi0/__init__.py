"""pi0 over transformers' native `PI0ForConditionalGeneration` (config, modules and LeRobot key conversion).

The weights live in transformers' PI0 modules and load through its own `from_pretrained`, which maps
LeRobot's pi0 key names. The forward is the shared joint VLM+expert loop of `rocket_plugins.vla.paligemma`, so the
per-layer prefix states come from the same pass as the action loss (docs/pi0.md explains why).
"""
from __future__ import annotations

from typing import Callable

from rocket_core import hookimpl
from rocket_plugins.vla.paligemma.adapter import PaliGemmaFlowAdapter


class Pi0Adapter(PaliGemmaFlowAdapter):
    """pi0 (PaliGemma + Gemma action expert) on transformers' native PI0 modules."""

    name = "pi0"
    description = "pi0 (LeRobot lerobot/pi0_base) on transformers' PI0, flow matching"
    policy_class = "rocket_plugins.vla.pi0.model:Pi0Policy"
    default_checkpoint = "lerobot/pi0_base"
    normalization = "mean_std"  # openpi / LeRobot pi0: MEAN_STD state and actions


@hookimpl
def register_vlas(register: Callable[[type], None]) -> None:
    register(Pi0Adapter)
