"""Where weights come from: a local folder or file, or a Hugging Face Hub repo through the HF cache.

Every plugin resolves its checkpoint here, so offline behaviour and error messages are the same for all
of them: a cached snapshot is used offline; a missing one is one line that says how to get it
(`rocket pull NAME` with network access, or a local path).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from rocket_core.errors import RocketError

if TYPE_CHECKING:  # imported where tensors are loaded: `rocket pull` and `--help` stay torch-free
    import torch

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin")


def _looks_like_path(checkpoint: str) -> bool:
    """A repo id is exactly 'owner/name'; anything path-shaped is meant as a local path."""
    return checkpoint.startswith((".", "/", "~")) or checkpoint.endswith(WEIGHT_SUFFIXES) or checkpoint.count("/") > 1


def local_path(checkpoint: str) -> Path | None:
    """The local file or folder `checkpoint` names, None for a Hub repo id; a path that does not exist fails."""
    path = Path(checkpoint).expanduser()
    if path.exists():
        return path
    if _looks_like_path(checkpoint):
        raise RocketError(f"checkpoint path '{checkpoint}' does not exist; check the path or give a Hub repo id")
    return None


def _hub_error(repo_id: str, revision: str | None, exc: Exception, pull_name: str) -> RocketError:
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision '{revision}'" if revision else ""
    if isinstance(exc, HFValidationError):
        return RocketError(f"'{repo_id}' is neither an existing local path nor a valid Hub repo id ('owner/name')")
    if isinstance(exc, GatedRepoError):
        return RocketError(f"Hub repo '{repo_id}' is gated: accept its licence on huggingface.co and run `hf auth login`")
    if isinstance(exc, RevisionNotFoundError):
        return RocketError(f"Hub repo '{repo_id}' has no revision '{revision}'; give an existing branch, tag or commit")
    if isinstance(exc, RepositoryNotFoundError):
        return RocketError(f"Hub repo '{repo_id}' does not exist (or is private: run `hf auth login`); check the name")
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):  # offline or unreachable, not cached
        return RocketError(
            f"weights '{repo_id}'{at} are not in the local Hugging Face cache and the Hub cannot be reached; "
            f"run `rocket pull {pull_name}` with network access, or pass a local path as the checkpoint"
        )
    detail = " ".join(str(exc).split())[:300]  # e.g. disk full, permission denied, server error
    return RocketError(f"cannot fetch '{repo_id}'{at}: {type(exc).__name__}: {detail}")


def snapshot(
    repo_id: str,
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    pull_name: str | None = None,
) -> Path:
    """The HF-cache folder of `repo_id` (downloaded if needed and online, cached copy offline).

    Shows huggingface_hub's progress bars while downloading. `pull_name` is what the error message tells
    the user to pull (a plugin name reads better than its repo id); it defaults to the repo id.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    pull_name = (pull_name or repo_id) + (f" --revision {revision}" if revision else "")
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(allow_patterns) if allow_patterns else None)
    except (HFValidationError, OSError, ValueError) as exc:  # hub errors derive from OSError/ValueError
        raise _hub_error(repo_id, revision, exc, pull_name) from None
    return Path(folder)


def resolve_weights(
    checkpoint: str,
    revision: str | None = None,
    allow_patterns: Sequence[str] | None = None,
    pull_name: str | None = None,
) -> Path:
    """A local folder/file as given, or the cached snapshot folder of a Hub repo id."""
    path = local_path(checkpoint)
    if path is not None:
        if revision:
            raise RocketError(f"a revision ('{revision}') only applies to Hub repos, not the local path '{checkpoint}'")
        return path
    return snapshot(checkpoint, revision, allow_patterns, pull_name)


def find_weights_file(path: Path, preferred: Sequence[str] = ("model.safetensors",)) -> Path:
    """The single weights file in `path` (a file is returned as is); safetensors wins over pickled formats."""
    if path.is_file():
        if not path.name.endswith(WEIGHT_SUFFIXES):
            raise RocketError(f"'{path}' is not a weights file; expected one of {', '.join(WEIGHT_SUFFIXES)}")
        return path
    for name in preferred:
        if (path / name).is_file():
            return path / name
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(path.glob(f"*{suffix}"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise RocketError(f"folder '{path}' holds several {suffix} files ({names}); pass the file itself")
    raise RocketError(f"folder '{path}' holds no weights file ({', '.join(WEIGHT_SUFFIXES)})")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a torch file read with `weights_only=True` (never plain pickle)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign files: say which file and why, in one line
        detail = " ".join(str(exc).split())[:300]
        raise RocketError(f"cannot read weights file '{path}': {type(exc).__name__}: {detail}") from None
    if isinstance(state, dict) and set(state) <= {"model", "state_dict"} and len(state) == 1:
        state = next(iter(state.values()))  # training checkpoints often wrap the state dict once
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RocketError(f"weights file '{path}' does not hold a state dict of tensors")
    return state


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_keys(
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    where: str,
    ignore: Callable[[str], bool] = lambda key: False,
    hint: str = "",
) -> None:
    """Fail naming every missing, mis-shaped and unknown key (`ignore`d ones aside) before loading.

    `strict=False` loading would hide them and give a silently half-random model.
    """
    missing = sorted(expected.keys() - found.keys())
    shapes = sorted(f"{k} {tuple(found[k])} vs {tuple(expected[k])}" for k in expected.keys() & found.keys()
                    if tuple(found[k]) != tuple(expected[k]))
    unknown = sorted(k for k in found.keys() - expected.keys() if not ignore(k))
    problems = [template.format(n=len(keys)) + _listing(keys) for template, keys in (
        ("missing {n} key(s): ", missing),
        ("{n} key(s) with the wrong shape (checkpoint vs model): ", shapes),
        ("{n} unknown key(s): ", unknown),
    ) if keys]
    if problems:
        raise RocketError(f"{where} does not fit the model ({'; '.join(problems)}){'; ' + hint if hint else ''}")
