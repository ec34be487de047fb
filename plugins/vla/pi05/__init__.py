"""pi0.5 in our own code over transformers' PaliGemma / Gemma modules (transformers has no pi0.5).

What differs from pi0 (see docs/pi0.md): the state is discretised into 256 bins and written into the prompt,
the suffix is only the action tokens, and the flow time drives adaptive RMSNorm in every expert norm.
Weights load from LeRobot's key names (`lerobot/pi05_base`) directly.
"""
from __future__ import annotations

from typing import Callable

from rocket_core import hookimpl
from rocket_plugins.vla.paligemma.adapter import PaliGemmaFlowAdapter


class Pi05Adapter(PaliGemmaFlowAdapter):
    """pi0.5 (PaliGemma + adaRMS action expert), our own implementation over transformers' modules."""

    name = "pi05"
    description = "pi0.5 (LeRobot lerobot/pi05_base), flow matching, native implementation"
    policy_class = "rocket_plugins.vla.pi05.model:Pi05Policy"
    default_checkpoint = "lerobot/pi05_base"
    normalization = "quantile"  # openpi / LeRobot pi0.5: q01/q99 (QUANTILES); the state bins need [-1, 1]


@hookimpl
def register_vlas(register: Callable[[type], None]) -> None:
    register(Pi05Adapter)
