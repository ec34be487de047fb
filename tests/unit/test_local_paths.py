"""Local paths are local (issue 15, point 4): only `hf://ORG/NAME` or a bare, non-local ORG/NAME goes to the Hub."""
from __future__ import annotations

from pathlib import Path

import pytest

from rocket_core.errors import RocketError
from rocket_core.hub import is_local, nearest_folders, resolve_policy, resolve_source


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "good-run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "goodish").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("arg, local", [
    ("runs/nope", True),  # first part is an existing folder
    ("acme/model", False),  # a bare ORG/NAME that is not local: the Hub
    ("hf://runs/nope", False),  # explicit Hub, even though runs/ exists
    ("hf:/acme/model", False),  # as pathlib.Path leaves `hf://`
    ("./acme/model", True), ("../acme", True), ("/abs/path", True), ("~/acme", True),
    ("a/b/c", True),  # more than one '/'
    ("weights.safetensors", True), ("missing.pt", True),
    ("justaname", True),  # not ORG/NAME
    (".", True),
])
def test_is_local(in_tmp: Path, arg: str, local: bool) -> None:
    assert is_local(arg) is local


def test_missing_local_path_names_the_nearest_run_folders(in_tmp: Path) -> None:
    assert nearest_folders(Path("runs/good-rn")) == ["runs/good-run", "runs/goodish"]  # run folders first
    with pytest.raises(RocketError) as err:
        resolve_source("runs/good-rn", "--resume", local_only=True)
    assert str(err.value) == ("--resume 'runs/good-rn' does not exist; nearest existing folders: runs/good-run, "
                              "runs/goodish (a Hub repo is written hf://ORG/NAME)")
    with pytest.raises(RocketError, match="--resume 'acme/model' does not exist"):  # --resume: local unless hf://
        resolve_source("acme/model", "--resume", local_only=True)
    assert resolve_source("runs/good-run", "--resume", local_only=True) == Path("runs/good-run")


def test_hub_ids_go_to_the_hub_cache(in_tmp: Path) -> None:
    for arg in ("hf://acme/model", "acme/model"):  # offline in tests: the cache is asked, and says how to pull
        with pytest.raises(RocketError, match="not in the local Hugging Face cache.*`rocket pull acme/model`"):
            resolve_source(arg, "--policy")


def test_policy_sources(in_tmp: Path) -> None:
    assert resolve_policy("ws://127.0.0.1:8000") == "ws://127.0.0.1:8000"
    assert resolve_policy("wss://robot.lab:443") == "wss://robot.lab:443"
    assert resolve_policy("runs/good-run") == Path("runs/good-run")
    assert resolve_policy("replay:runs/goodish") == "replay:runs/goodish"
    with pytest.raises(RocketError, match=r"use ws://127.0.0.1:8000 for `rocket serve`"):
        resolve_policy("http://127.0.0.1:8000")
    with pytest.raises(RocketError, match=r"use wss://robot.lab for"):
        resolve_policy("https://robot.lab")
    with pytest.raises(RocketError, match=r"--policy 'runs/nope' does not exist; nearest existing folders: runs/"):
        resolve_policy("runs/nope")
    with pytest.raises(RocketError, match=r"replay: dataset folder 'nowhere' does not exist; nearest existing folders: runs$"):
        resolve_policy("replay:nowhere")


def test_checkpoint_flags_take_hf_urls() -> None:
    from rocket_core.specs import TeacherSpec, VLASpec

    assert VLASpec(name="openvla", checkpoint="hf://openvla/openvla-7b").checkpoint == "openvla/openvla-7b"
    assert TeacherSpec(name="vggt", checkpoint="./local/vggt").checkpoint == "./local/vggt"
