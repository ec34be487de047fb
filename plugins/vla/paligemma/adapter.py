"""The shared `VLAAdapter` of pi0 and pi0.5 (import-light: the model loads inside `build`)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar

from rocket_core.contracts import VLAAdapter, VLAInfo
from rocket_plugins.vla.paligemma.config import PALIGEMMA_TOKENIZER, PolicyOptions, arch_for, vla_info

if TYPE_CHECKING:
    from rocket_core.specs import VLASpec
    from rocket_plugins.vla.paligemma.policy import PaliGemmaFlowPolicy

class PaliGemmaFlowAdapter(VLAAdapter):
    """`info` / `build` for both plugins; a subclass names its policy class, default checkpoint and tokenizer length."""

    options_model = PolicyOptions
    profile_params: ClassVar[tuple[str, ...]] = ("language_model.layers.0.",)
    policy_class: ClassVar[str]  # "module:Class" of the model, imported by `build` only
    default_checkpoint: ClassVar[str]
    normalization: ClassVar[str]  # the data normalisation the policy was trained with (openpi / LeRobot)

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        return vla_info(arch_for(spec, cls.default_checkpoint), PolicyOptions.parse(spec), cls.normalization)

    @classmethod
    def build(cls, spec: VLASpec) -> PaliGemmaFlowPolicy:
        """`preset="tiny"`: random init (seeded by the caller); else the checkpoint, downloaded if needed.

        Every parameter keeps `requires_grad`; `configure_training` decides what trains.
        """
        from rocket_core.hub import resolve_weights

        module, _, attr = cls.policy_class.partition(":")
        policy_cls: type[PaliGemmaFlowPolicy] = getattr(importlib.import_module(module), attr)
        opts = PolicyOptions.parse(spec)
        folder = None
        if spec.preset is None:
            folder = resolve_weights(spec.checkpoint or cls.default_checkpoint, spec.revision,
                                     ("*.json", "model*.safetensors"), pull_name=cls.name)
            spec = spec.model_copy(update={"checkpoint": str(folder)})
        arch = arch_for(spec, cls.default_checkpoint)
        model = policy_cls(arch, opts, vla_info(arch, opts, cls.normalization))
        model.tokenizer_name = opts.tokenizer or ("bytes" if spec.preset == "tiny" else PALIGEMMA_TOKENIZER)
        if folder is not None:
            model.load(folder)
        model.to(opts.torch_dtype())
        return model
