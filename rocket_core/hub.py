"""Where weights come from: a local folder or file, or a Hugging Face Hub repo through the HF cache.

Every plugin resolves its checkpoint here, so offline behaviour and error messages are the same for all
of them: a cached snapshot is used offline; a missing one is one line that says how to get it
(`rocket pull NAME` with network access, or a local path).

Local paths are local: an argument is a Hub repo only when written `hf://ORG/NAME`, or when it is a bare
`ORG/NAME` that cannot be a local path (see `is_local`). A mistyped run folder is reported as missing,
with the nearest existing folders, instead of being looked up on the Hub.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from rocket_core.errors import RocketError

if TYPE_CHECKING:  # imported where tensors are loaded: `rocket pull` and `--help` stay torch-free
    import torch

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin")
_HF_PREFIX = re.compile(r"^hf:/+")  # `hf://` (a pathlib.Path squeezes it to `hf:/`)
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def hub_id(arg: str | Path) -> str | None:
    """ORG/NAME of an explicit `hf://ORG/NAME`, else None."""
    text = str(arg)
    return _HF_PREFIX.sub("", text) if _HF_PREFIX.match(text) else None


def as_repo_id(arg: str) -> str | None:
    """ORG/NAME from `hf://ORG/NAME` or `ORG/NAME` (by syntax alone), else None."""
    text = hub_id(arg) or arg
    return text if _REPO_ID.match(text) else None


def is_local(arg: str | Path) -> bool:
    """Whether `arg` names a local path: it exists, starts with ./ ../ / or ~, has more than one '/',
    ends like a weights file, or its first part is an existing local folder (`runs/nope`).
    Anything but a bare ORG/NAME is local too; `hf://ORG/NAME` never is."""
    text = str(arg)
    if hub_id(text) is not None:
        return False
    if Path(text).expanduser().exists() or text.startswith(("./", "../", "/", "~")) or text in (".", ".."):
        return True
    if text.endswith(WEIGHT_SUFFIXES) or not _REPO_ID.match(text):
        return True
    return Path(text.split("/", 1)[0]).is_dir()


def nearest_folders(path: Path, limit: int = 3) -> list[str]:
    """Existing folders next to the first missing part of `path`, most similar name first (run folders first)."""
    probe, missing = path, path.name
    while not probe.exists() and probe != probe.parent:
        probe, missing = probe.parent, probe.name
    if not probe.is_dir():
        return []
    folders = [d for d in probe.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if not folders:
        return []
    runs = {d.name for d in folders if (d / "checkpoints").is_dir() or (d / "state.json").is_file()}
    ranked = difflib.get_close_matches(missing, [d.name for d in folders], n=len(folders), cutoff=0.0)
    ranked.sort(key=lambda name: name not in runs)  # stable: similarity order within each group
    return [str(probe / name) if str(probe) != "." else name for name in ranked[:limit]]


def missing_path(arg: str | Path, what: str, hub_hint: bool = True) -> RocketError:
    """One line: `what` 'arg' does not exist, with the nearest existing folders (and how to name a Hub repo)."""
    near = nearest_folders(Path(str(arg)).expanduser())
    hint = f"; nearest existing folders: {', '.join(near)}" if near else ""
    hint += " (a Hub repo is written hf://ORG/NAME)" if hub_hint else ""
    return RocketError(f"{what} '{arg}' does not exist{hint}")


def local_path(checkpoint: str, what: str = "checkpoint path") -> Path | None:
    """The local file or folder `checkpoint` names, None for a Hub repo id; a local path that does not exist fails."""
    if not is_local(checkpoint):
        return None
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise missing_path(checkpoint, what)
    return path


def resolve_source(arg: str | Path, what: str, local_only: bool = False) -> Path:
    """A local file/folder, or the cached snapshot of a Hub repo (`hf://ORG/NAME`, or a bare non-local ORG/NAME
    unless `local_only`: `--resume` and `-o` values are local paths unless written hf://)."""
    repo = hub_id(arg)
    if repo is None and not local_only and not is_local(arg):
        repo = str(arg)
    if repo is not None:
        return snapshot(repo, pull_name=repo)
    path = Path(str(arg)).expanduser()
    if not path.exists():
        raise missing_path(arg, what)
    return path


def resolve_policy(arg: str) -> str | Path:
    """`--policy`: a ws:// or wss:// URL, `replay:DIR` (returned as given once DIR exists), or the local folder of a
    run, a checkpoint or a Hub repo. http:// gets a hint: `rocket serve` speaks websocket."""
    if arg.startswith(("ws://", "wss://")):
        return arg
    if arg.startswith(("http://", "https://")):
        scheme = "wss" if arg.startswith("https://") else "ws"
        raise RocketError(f"--policy takes a websocket URL: use {scheme}://{arg.split('://', 1)[1]} for `rocket serve` "
                          "(or a run folder, a checkpoint folder, a Hub id ORG/NAME, replay:DIR)")
    if arg.startswith("replay:"):
        folder = arg.removeprefix("replay:")
        if not Path(folder).expanduser().is_dir():
            raise missing_path(folder, "--policy replay: dataset folder", hub_hint=False)
        return arg
    return resolve_source(arg, "--policy")


def _hub_error(repo_id: str, revision: str | None, exc: Exception, pull_name: str | None) -> RocketError:
    """One line per Hub failure; `pull_name` None: the failing command is `rocket pull` itself."""
    from huggingface_hub import constants
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
        if pull_name is None:  # `rocket pull` itself failed: suggesting it again would not help
            offline = "set HF_HUB_OFFLINE=0 and " if constants.HF_HUB_OFFLINE else ""
            return RocketError(
                f"cannot download '{repo_id}'{at}: the Hub cannot be reached; {offline}connect to the network and "
                "retry, or copy the weights into this machine's Hugging Face cache (HF_HOME) from one that has "
                "them, or skip the pull and pass a local weights folder as the checkpoint"
            )
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
    pulling: bool = False,
) -> Path:
    """The HF-cache folder of `repo_id` (downloaded if needed and online, cached copy offline).

    Shows huggingface_hub's progress bars while downloading. `pull_name` is what the error message tells
    the user to pull (a plugin name reads better than its repo id); it defaults to the repo id. `pulling`:
    the caller is `rocket pull`, so an offline error says what to do instead.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    pull_name = (pull_name or repo_id) + (f" --revision {revision}" if revision else "")
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=list(allow_patterns) if allow_patterns else None)
    except (HFValidationError, OSError, ValueError) as exc:  # hub errors derive from OSError/ValueError
        raise _hub_error(repo_id, revision, exc, None if pulling else pull_name) from None
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
    return snapshot(hub_id(checkpoint) or checkpoint, revision, allow_patterns, pull_name)


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
