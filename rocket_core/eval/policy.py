"""A VLA plugin as an inference policy: raw observation -> action chunk in robot units.

Built from a `rocket align` checkpoint (verified and rebuilt by `train.build.load_trained`: its spec
rebuilds the model, `ema.safetensors` when present or else `trainable.safetensors` fills the trained
parts, `state.json` gives the state/action normalisation and camera slots, `conventions.json` the data
conventions), from a folder in a VLA reference's own format (`VLAAdapter.read_foreign`), or from a plugin preset (`--vla openvla --preset
tiny`: random weights, no normalisation, for smoke tests). Every VLA plugin answers through the contract's
`predict_action(batch)`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from rocket_core.contracts import VLAInfo
from rocket_core.conventions import Conventions
from rocket_core.data.normalize import Normalizer
from rocket_core.errors import RocketError


class ObservationError(RocketError):
    """A malformed observation (the server answers it with an error message, not a crash)."""


def _set_seed(seed: int) -> None:
    """What the trainer's `accelerate.utils.set_seed` does, so a preset's frozen random weights match."""
    from accelerate.utils import set_seed

    set_seed(seed)


class Policy:
    """Observation -> action chunk for any VLA plugin, with the checkpoint's normalisation."""

    def __init__(self, model: Any, vla_name: str, info: VLAInfo, *, source: str,
                 state_norm: Normalizer | None = None, action_norm: Normalizer | None = None,
                 cameras: list[str] | None = None, seed: int = 7, conventions: Conventions | None = None) -> None:
        self.model, self.vla_name, self.info, self.source = model, vla_name, info, source
        self.state_norm, self.action_norm = state_norm, action_norm
        self.conventions = conventions
        self.group_norms = _group_norms(conventions)  # per-suite normalisation, chosen by obs["unnorm_key"]
        self.cameras = cameras or [f"camera{i}" for i in range(info.num_images)]
        self.seed = seed
        self.model.eval()
        self._device = next(model.parameters()).device

    # ---- construction -----------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: Path, ema: bool | None = None, device: str | None = None) -> Policy:
        """The checkpoint's VLA, rebuilt and verified by `train.build.load_trained`; EMA weights when the
        checkpoint has them and `ema` is not False (True: required)."""
        from rocket_core.train.build import load_trained

        foreign = cls.from_foreign(Path(path), device)
        if foreign is not None:
            return foreign
        run = load_trained(Path(path), ema=ema, teacher=False, frozen=True)
        spec, state = run.plan.spec, run.checkpoint.extra
        model = run.module.vla
        norm = state.get("normalization") or {}
        if device:
            model.to(device)  # type: ignore[attr-defined]  # an nn.Module; VLAModel has no .to
        return cls(model, spec.vla.name, run.plan.vla_info, source=f"{run.path} ({run.weights} weights)",
                   state_norm=Normalizer.from_dict(norm["state"]) if norm.get("state") else None,
                   action_norm=Normalizer.from_dict(norm["action"]) if norm.get("action") else None,
                   cameras=state.get("cameras"), seed=spec.training.seed, conventions=Conventions.load(run.path))

    @classmethod
    def from_foreign(cls, path: Path, device: str | None = None) -> Policy | None:
        """The first VLA plugin's reading of `path` as a folder of its reference's format, built and with the
        folder's default normalisation group; None when no plugin recognises it."""
        from rocket_core.registry import get_registry

        for record in get_registry().plugins["vla"].values():
            found = record.cls.read_foreign(path, device)
            if found is None:
                continue
            spec, conv = found
            _set_seed(0)
            model = record.cls.build(spec)
            if device:
                model.to(device)
            norm = conv.normalization
            group = norm.groups[norm.default] if norm.default else None
            return cls(model, spec.name, record.cls.info(spec), source=f"{path} ({conv.source} folder)",
                       state_norm=Normalizer.from_dict(group.state.model_dump()) if group and group.state else None,
                       action_norm=Normalizer.from_dict(group.action.model_dump()) if group and group.action else None,
                       cameras=conv.images.cameras or None, conventions=conv)
        return None

    @classmethod
    def from_preset(cls, vla: str, preset: str | None = "tiny", options: Mapping[str, Any] | None = None,
                    seed: int = 7, device: str | None = None) -> Policy:
        from rocket_core.contract_info import expect_model
        from rocket_core.registry import get_registry
        from rocket_core.specs import VLASpec

        spec = VLASpec(name=vla, preset=preset, options=dict(options or {}))
        adapter = get_registry().get("vla", vla)
        _set_seed(seed)
        model = expect_model("vla", vla, adapter.build(spec))
        if device:
            model.to(device)
        return cls(model, vla, adapter.info(spec), source=f"{vla} preset {preset}", seed=seed)

    # ---- serving ----------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        i = self.info
        return {
            "vla": self.vla_name,
            "eval_family": i.eval_family,
            "source": self.source,
            "cameras": list(self.cameras),
            "num_images": i.num_images,
            "state_dim": i.state_dim,
            "action_dim": i.action_dim,
            "chunk_size": i.chunk_size,
            "normalization": {"state": self.state_norm is not None, "action": self.action_norm is not None},
            "conventions": self.conventions.model_dump(mode="json") if self.conventions is not None else None,
        }

    def norms_for(self, obs: Mapping[str, Any]) -> tuple[Normalizer | None, Normalizer | None]:
        """(state, action) normalisers of the observation's `unnorm_key` (its suite), else the default ones."""
        key = obs.get("unnorm_key")
        if key is None:
            return self.state_norm, self.action_norm
        if key not in self.group_norms:
            raise ObservationError(f"unnorm_key '{key}' is not in this checkpoint; use one of: "
                                   f"{', '.join(self.group_norms) or 'none (it has one set of statistics)'}")
        return self.group_norms[key]

    def _check(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor | None, str, Normalizer | None]:
        if not isinstance(obs, Mapping):
            raise ObservationError(f"the observation must be a map with images, state and task, got {type(obs).__name__}")
        state_norm, action_norm = self.norms_for(obs)
        missing = [k for k in ("images", "task") if k not in obs]
        if missing:
            raise ObservationError(f"the observation lacks {', '.join(missing)} (keys: images, state, task)")
        images, task = obs["images"], obs["task"]
        if not isinstance(task, str) or not task.strip():
            raise ObservationError("'task' must be a non-empty instruction string")
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)) or len(images) != self.info.num_images:
            got = len(images) if isinstance(images, (list, tuple)) else type(images).__name__
            raise ObservationError(f"'images' must be a list of {self.info.num_images} camera frames "
                                   f"({', '.join(self.cameras)}), got {got}")
        frames = []
        for k, im in enumerate(images):
            im = np.asarray(im)
            if im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8:
                raise ObservationError(f"image {k} ({self.cameras[k]}) must be uint8 (H, W, 3), "
                                       f"got {im.dtype} {tuple(im.shape)}")
            frames.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255.0)
        if len({f.shape for f in frames}) != 1:
            raise ObservationError(f"all camera frames must have one size, got {[tuple(f.shape) for f in frames]}")
        state = None
        if self.info.state_dim is not None:
            if obs.get("state") is None:
                raise ObservationError(f"this policy needs 'state' ({self.info.state_dim} proprio values)")
            raw = np.asarray(obs["state"], dtype=np.float32).reshape(-1)
            if raw.shape[0] != self.info.state_dim or not np.all(np.isfinite(raw)):
                raise ObservationError(f"'state' must hold {self.info.state_dim} finite numbers, got {raw.shape[0]}")
            state = torch.from_numpy(raw)
            if state_norm is not None:
                state = state_norm.normalize(state)
        return torch.stack(frames), state, task, action_norm

    @torch.no_grad()
    def infer(self, obs: Any) -> dict[str, Any]:
        images, state, task, action_norm = self._check(obs)
        start = time.perf_counter()
        batch = {
            "images": images[None].to(self._device),
            "image_masks": torch.ones(1, images.shape[0], dtype=torch.bool, device=self._device),
            "state": (state if state is not None else torch.zeros(self.info.state_dim or 1))[None].to(self._device),
            "task": [task],
        }
        actions = self.model.predict_action(batch)[0].float().cpu()
        if self.info.action_dim:
            actions = actions[..., : self.info.action_dim]
        if action_norm is not None:
            actions = action_norm.unnormalize(actions)
        return {"kind": "actions", "actions": actions.numpy().astype(np.float32),
                "timing": {"infer_ms": (time.perf_counter() - start) * 1000.0}}


def _group_norms(conv: Conventions | None) -> dict[str, tuple[Normalizer | None, Normalizer | None]]:
    if conv is None:
        return {}
    return {name: (Normalizer.from_dict(g.state.model_dump()) if g.state else None,
                   Normalizer.from_dict(g.action.model_dump()) if g.action else None)
            for name, g in conv.normalization.groups.items()}
