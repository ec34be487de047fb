"""`rocket push`: the folder it builds, the model card, the (mocked) upload, and pulling it back to resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from safetensors.torch import load_file
from typer.testing import CliRunner

import rocket_core.registry as registry_module
from rocket_cli.main import app
from rocket_core.engine import plan_run
from rocket_core.publish import build_push_folder
from rocket_core.train.trainer import Trainer
from tests.integration.train_toy import toy_registry, toy_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run")
    Trainer(plan_run(toy_spec(3, 2, 0), toy_registry()), path, progress=False).train()
    return path


def test_push_folder_and_model_card(run_dir: Path, tmp_path: Path) -> None:
    out = build_push_folder(run_dir, tmp_path / "push")
    names = {p.name for p in out.iterdir()}
    assert {"lora_adapter.safetensors", "heads.safetensors", "projector.safetensors", "layers.yaml", "spec.yaml",
            "README.md", "state.json", "trainable.safetensors"} <= names
    lora, heads = load_file(str(out / "lora_adapter.safetensors")), load_file(str(out / "heads.safetensors"))
    assert lora and all(".lora_" in k and not k.startswith("vla.") for k in lora)
    assert set(heads) == {"action_head.weight", "action_head.bias"}
    card = (out / "README.md").read_text()
    assert "library_name: rocket" in card and "toy-vla aligned to toy-teacher" in card
    assert "| 2 | 4 | 2 |" in card  # the layer pairs table
    assert "Steps**: 3 of 3" in card and "the bundled synthetic dataset" in card
    assert json.loads(card.split("```json")[1].split("```")[0])["action_loss"] > 0


def test_push_uploads_the_folder(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, object] = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.setdefault("repo", repo_id))

    def upload(self, folder_path, repo_id, **kw):  # type: ignore[no-untyped-def]
        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        return "https://hub/commit/abc"

    monkeypatch.setattr(HfApi, "upload_folder", upload)
    result = runner.invoke(app, ["push", "--checkpoint", str(run_dir), "--repo-id", "org/toy-rocket"])
    assert result.exit_code == 0, result.output
    assert calls["repo"] == "org/toy-rocket" and "README.md" in calls["files"]
    assert "pushed to org/toy-rocket" in result.output


def test_pulled_push_resumes(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pushed folder in the HF cache (as `rocket pull` leaves it) is accepted by `rocket align --resume`."""
    cache = tmp_path / "hf"
    snap = cache / "models--org--toy-rocket" / "snapshots" / ("a" * 40)
    build_push_folder(run_dir, snap)
    (cache / "models--org--toy-rocket" / "refs").mkdir()
    (cache / "models--org--toy-rocket" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(registry_module, "_CACHED", toy_registry())
    out = tmp_path / "continued"
    result = runner.invoke(app, ["align", "--resume", "hf://org/toy-rocket", "--max-steps", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [4]


def test_model_card_names_the_real_repo(run_dir: Path, tmp_path: Path) -> None:
    card = (build_push_folder(run_dir, tmp_path / "push", "acme/toy-rocket") / "README.md").read_text()
    assert "rocket pull acme/toy-rocket\n" in card and "rocket align --resume hf://acme/toy-rocket" in card
    assert "ORG/NAME" not in card


def test_push_dry_run_uploads_nothing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*a: object, **k: object) -> None:
        raise AssertionError("a dry run must not reach the Hub")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    result = runner.invoke(app, ["push", "--checkpoint", str(run_dir), "--repo-id", "org/toy-rocket", "--dry-run",
                                 "--folder", str(tmp_path / "kept")])
    assert result.exit_code == 0, result.output
    assert "dry run: would push" in result.output and "to org/toy-rocket; nothing uploaded" in result.output
    assert "rocket pull org/toy-rocket" in (tmp_path / "kept" / "README.md").read_text()


def test_push_never_deletes_a_folder_it_did_not_create(run_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`--folder X` next to the user's own `X.tmp/`: it survives a push that works and one that fails."""
    mine = tmp_path / "X.tmp"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: "https://hub/commit/abc")
    ok = runner.invoke(app, ["push", "--checkpoint", str(run_dir), "--repo-id", "org/x", "--folder", str(tmp_path / "X")])
    assert ok.exit_code == 0, ok.output
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for f in broken.rglob("trainable.safetensors"):
        f.write_bytes(b"garbage")
    bad = runner.invoke(app, ["push", "--checkpoint", str(broken), "--repo-id", "org/x", "--folder", str(tmp_path / "Y")])
    assert bad.exit_code == 2 and "truncated or altered" in bad.output and not (tmp_path / "Y").exists()
    assert (mine / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "X.tmp", "broken"]  # no temporary folder left
    assert runner.invoke(app, ["push", "--checkpoint", str(run_dir), "--repo-id", "not a repo"]).exit_code == 2
