"""`rocket profile` end to end on the tiny OpenVLA + VGGT presets and the bundled data (CPU, few samples)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib.image import imread
from typer.testing import CliRunner

from rocket_cli import profile as profile_cli
from rocket_cli.main import app as rocket_app
from rocket_core.analysis import plots
from rocket_core.select.layermap import read_layer_map

runner = CliRunner()
TINY = ["--vla", "openvla", "--teacher", "vggt", "--preset", "tiny"]


def _app() -> typer.Typer:
    """A `rocket` with the profile group (cli/main.py registers it in the shipped command)."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """rocket"""

    profile_cli.register(app)
    return app


APP = _app()


def _profile(*args: str) -> dict:
    result = runner.invoke(APP, ["profile", *args])
    assert result.exit_code == 0, result.output
    return result


def _png(path: Path, size: tuple[int, int]) -> None:
    image = imread(path)
    assert image.shape[:2] == (size[1], size[0]), image.shape
    assert float(image[..., :3].var()) > 0  # not blank


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny training runs (2 steps): the shared Matryoshka projector and independent projectors."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for projector in ("rocket", "independent"):
        result = runner.invoke(rocket_app, ["align", *TINY, "--projector", projector, "--max-steps", "2",
                                            "--batch-size", "2", "-o", str(root / projector)])
        assert result.exit_code == 0, result.output
        out[projector] = root / projector
    return out


def test_cka_writes_json_png_and_a_layer_map_align_accepts(tmp_path: Path) -> None:
    exact_dir, sketch_dir = tmp_path / "exact", tmp_path / "sketch"
    _profile("cka", *TINY, "--samples", "16", "--batch-size", "8", "-o", str(exact_dir))
    doc = _json(exact_dir / "cka.json")
    assert doc["kind"] == "cka" and doc["method"] == "exact" and doc["sketch"] is None  # auto: 16 x 40 K fits
    assert doc["samples"] == 16 and len(set(doc["sample_indices"])) == 16
    cka = doc["matrices"]["cka"]
    assert cka["rows"] == [0, 1, 2, 3, 4] and cka["cols"] == [0, 1, 2, 3]  # every hidden state x every layer
    values = np.array(cka["values"])
    assert values.shape == (5, 4) and np.all((values >= -1e-9) & (values <= 1 + 1e-9))
    for name in ("vla_vla", "teacher_teacher"):  # CKA of the same features: unit diagonal, symmetric
        m = np.array(doc["matrices"][name]["values"])
        assert np.allclose(np.diag(m), 1.0, atol=1e-6) and np.allclose(m, m.T, atol=1e-9)
    pairs = doc["matching"]["pairs"]
    assert len(pairs) == 4  # min(5 rows, 4 cols)
    assert len({p["vla"] for p in pairs}) == 4 and sorted(p["teacher"] for p in pairs) == [0, 1, 2, 3]  # one-to-one
    for p in pairs:
        assert p["cka"] == pytest.approx(values[p["vla"], p["teacher"]])
    assert doc["matching"]["average_cka"] == pytest.approx(np.mean([p["cka"] for p in pairs]))
    best = doc["matching"]["best_teacher_per_vla"]
    assert {int(k): v for k, v in best.items()} == {r: int(np.argmax(values[r])) for r in range(5)}
    _png(exact_dir / "cka.png", plots.HEATMAP_PX)

    layer_map = read_layer_map(exact_dir / "layers.yaml")
    assert layer_map.vla == sorted(p["vla"] for p in pairs)
    assert dict(layer_map.pairs) == {p["vla"]: p["teacher"] for p in pairs}
    plan = runner.invoke(rocket_app, ["align", *TINY, "--layers", str(exact_dir / "layers.yaml"), "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "4 layer pairs" in plan.output

    # the streamed sketch on the same samples agrees with exact CKA (VLA 2048, pooled teacher 4096 features)
    _profile("cka", *TINY, "--samples", "16", "--method", "sketch", "--sketch-dim", "2048", "-o", str(sketch_dir))
    sk = _json(sketch_dir / "cka.json")
    assert sk["method"] == "sketch" and sk["sketch"] == {"type": "countsketch", "dim": 2048, "seed": 0}
    assert sk["sample_indices"] == doc["sample_indices"]
    for name in ("cka", "vla_vla", "teacher_teacher"):
        gap = np.abs(np.array(sk["matrices"][name]["values"]) - np.array(doc["matrices"][name]["values"])).max()
        assert gap < 0.02, (name, gap)


def test_cka_layer_subsets_and_bad_input(tmp_path: Path) -> None:
    _profile("cka", *TINY, "--samples", "4", "--layers", "2-4:1,3", "-o", str(tmp_path))
    doc = _json(tmp_path / "cka.json")
    assert doc["matrices"]["cka"]["rows"] == [2, 3, 4] and doc["matrices"]["cka"]["cols"] == [1, 3]
    bad = runner.invoke(APP, ["profile", "cka", *TINY, "--layers", "0-9:all", "-o", str(tmp_path)])
    assert bad.exit_code == 2 and "out of range" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_grad_conflict_on_shared_and_independent_runs_then_compare(runs: dict[str, Path], tmp_path: Path) -> None:
    docs = {}
    for name, run in runs.items():
        _profile("grad-conflict", "--checkpoint", str(run), "--samples", "4", "-o", str(tmp_path / name))
        doc = docs[name] = _json(tmp_path / name / "grad_conflict.json")
        assert doc["kind"] == "grad-conflict" and doc["projector"] == name and doc["step"] == 2
        assert doc["batches"] == 2 and doc["batch_size"] == 2  # the run's batch size
        names = doc["params"]["names"]
        assert names and all("layers.0." in n and "lora_" in n for n in names)  # LoRA of LLM block 0
        m = np.array(doc["matrices"]["cosine"]["values"])
        assert m.shape == (2, 2) and np.allclose(np.diag(m), 1.0, atol=1e-4) and np.allclose(m, m.T, atol=1e-9)
        assert np.all(np.abs(m) <= 1 + 1e-6)
        assert doc["matrices"]["cosine"]["rows"] == ["v2-t2", "v3-t3"]
        _png(tmp_path / name / "grad_conflict.png", plots.HEATMAP_PX)
    fig = tmp_path / "shared_vs_naive.png"
    _profile("compare", str(tmp_path / "rocket" / "grad_conflict.json"),
             str(tmp_path / "independent" / "grad_conflict.json"), "-o", str(fig), "--labels", "ROCKET,independent")
    _png(fig, plots.COMPARE_PX)

    none = runner.invoke(APP, ["profile", "grad-conflict", "--checkpoint", str(runs["rocket"]), "--params", "nope.",
                               "-o", str(tmp_path / "x")])
    assert none.exit_code == 2 and "no LoRA parameter name contains" in none.output


@pytest.mark.slow
def test_projector_similarity_and_compare_guards(runs: dict[str, Path], tmp_path: Path) -> None:
    _profile("projector-similarity", "--checkpoint", str(runs["rocket"]), "--samples", "4", "--batch-size", "2",
             "-o", str(tmp_path))
    doc = _json(tmp_path / "projector_similarity.json")
    assert doc["kind"] == "projector-similarity" and doc["samples"] == 4
    assert [(p["vla"], p["teacher"]) for p in doc["pairs"]] == [(2, 2), (3, 3)]  # our indices, no -1 offset
    for name in ("inputs", "outputs", "targets"):
        m = np.array(doc["matrices"][name]["values"])
        assert m.shape == (2, 2) and np.allclose(np.diag(m), 1.0, atol=1e-5) and np.allclose(m, m.T, atol=1e-6)
    assert all(-1 <= p["cosine"] <= 1 for p in doc["output_target_cosine"])
    _png(tmp_path / "projector_similarity.png", plots.PANELS_PX)

    grad = tmp_path / "g"
    _profile("grad-conflict", "--checkpoint", str(runs["rocket"]), "--samples", "2", "-o", str(grad))
    mixed = runner.invoke(APP, ["profile", "compare", str(tmp_path / "projector_similarity.json"),
                                str(grad / "grad_conflict.json"), "-o", str(tmp_path / "c.png")])
    assert mixed.exit_code == 2 and "cannot compare a projector-similarity result with a grad-conflict" in mixed.output
    clash = runner.invoke(APP, ["profile", "grad-conflict", "--checkpoint", str(runs["rocket"]), "--vla", "pi0",
                                "-o", str(grad)])
    assert clash.exit_code == 2 and "cannot be combined with --checkpoint" in clash.output


def test_grad_conflict_on_a_fresh_tiny_model(tmp_path: Path) -> None:
    """No checkpoint: the model `rocket align --preset tiny` starts from (LoRA B = 0, so only B gets gradient)."""
    _profile("grad-conflict", *TINY, "--projector", "shared", "--samples", "2", "-o", str(tmp_path))
    doc = _json(tmp_path / "grad_conflict.json")
    assert doc["checkpoint"] is None and doc["projector"] == "shared"
    assert np.allclose(np.diag(np.array(doc["matrices"]["cosine"]["values"])), 1.0, atol=1e-4)
