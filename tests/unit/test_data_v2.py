"""LeRobot v2 datasets in the data pipeline: key presets, per-suite statistics, their cache, `rocket data inspect`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rocket_core.data import DataSpec, LeRobotReader, VLADataset
from rocket_core.data.keymap import episode_groups, task_groups
from rocket_core.errors import RocketError
from rocket_plugins.benchmarks.libero_data import LIBERO_TASK_SUITE
from tests.conftest import SHARED_FIXTURES, fixture_dir, needs_fixture
from tests.robustness.harness import run_rocket

PARENT = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2")
VARIANTS = sorted(p.parents[2].name for p in PARENT.glob("*/dataset/meta/info.json"))
pytestmark = needs_fixture(PARENT, "ROCKET_LEROBOT_V2_FIXTURE", present=bool(VARIANTS))
GOAL, OBJECT = "put the cream cheese in the bowl", "pick up the milk and place it in the basket"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Statistics that cannot sit beside a (read-only) dataset go to this test's own cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _copy(variant: str, tmp_path: Path, name: str = "ds") -> Path:
    """A writable copy (the shared fixture folders are read-only)."""
    root = Path(shutil.copytree(PARENT / variant / "dataset", tmp_path / name))
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return root


def _dim(root: Path, key: str) -> int:
    """The per-frame size of `key` that the dataset's meta/info.json declares."""
    return int(json.loads((root / "meta/info.json").read_text())["features"][key]["shape"][0])


def _suites(episodes: int) -> list[str]:
    """One instruction per episode: episode 1 from libero_object, every other from libero_goal."""
    assert episodes >= 2, "the fixture needs two episodes to mix two suites"
    return [OBJECT if e == 1 else GOAL for e in range(episodes)]


def _retask(root: Path, tasks: list[str]) -> None:
    """Give episode e the instruction tasks[e] (one task per episode, task_index = e, as in the fixture)."""
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    episodes = [json.loads(line) for line in (root / "meta/episodes.jsonl").read_text().splitlines()]
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(e | {"tasks": [tasks[e["episode_index"]]]}) + "\n" for e in episodes))


def _set_value(path: Path, key: str, row: int, dim: int, value: float) -> None:
    table = pq.read_table(path)
    rows = table.column(key).to_pylist()
    rows[row][dim] = value
    column = pa.array(rows, table.schema.field(key).type)
    pq.write_table(table.set_column(table.schema.get_field_index(key), key, column), path)


def test_libero_suites_are_told_apart_by_task() -> None:
    assert len(LIBERO_TASK_SUITE) == 40  # 4 suites x 10 instructions, each in exactly one suite
    groups = task_groups()  # what the core sees: every benchmark plugin's table
    assert groups["put the cream cheese in the bowl"] == "libero_goal"
    assert groups["put both moka pots on the stove"] == "libero_10"
    assert "pick up the black bowl" not in groups
    assert episode_groups([GOAL, OBJECT, GOAL]) == ["libero_goal", "libero_object", "libero_goal"]
    assert episode_groups([GOAL, GOAL]) == ["all", "all"]  # one suite: one group
    assert episode_groups([GOAL, "stack the cups"]) == ["all", "all"]  # not all LIBERO: pooled
    assert episode_groups([GOAL, OBJECT], mode="none") == ["all", "all"]


def test_hub_id_alone_selects_the_libero_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`data.dataset: physical-intelligence/libero` and nothing else: the cached Hub copy, its keys, stats."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "datasets--physical-intelligence--libero"
    shutil.copytree(PARENT / VARIANTS[0] / "dataset", repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    dataset = VLADataset(DataSpec(dataset="physical-intelligence/libero", action_norm_exclude=[-1]), seed=0, progress=False)
    assert (dataset.keys.state, dataset.keys.action, dataset.keys.preset) == ("state", "actions", "physical-intelligence/libero")
    assert dataset.slots == ["image", "wrist_image"] and dataset.keys.gripper.startswith("raw LIBERO")
    last = dataset.reader.num_episodes - 1
    assert list(dataset.group_stats) == ["all"] and dataset.group_of(dataset.reader.episode_index(last)) == "all"
    assert not (repo / "snapshots" / ("a" * 40) / ".rocket").exists(), "nothing is written into the HF cache"
    row = dataset.reader.episode_bounds(last)[0]
    sample = dataset[row]
    root = dataset.reader.root
    assert sample["state"].shape == (_dim(root, "state"),)
    assert sample["actions"].shape == (dataset.spec.chunk_size, _dim(root, "actions"))
    assert sample["actions"][0, -1].item() == dataset.reader.column("actions")[row, -1]  # gripper left raw


@pytest.mark.parametrize("variant", VARIANTS)
def test_missing_quantiles_are_computed_exactly_and_cached(variant: str, tmp_path: Path) -> None:
    root = _copy(variant, tmp_path)
    first = VLADataset(DataSpec(dataset=str(root)), seed=0, progress=False)
    assert first.stats_source.startswith("computed ") and str(root / ".rocket") in first.stats_source
    for key in ("state", "actions"):
        values = first.reader.column(key).astype(np.float64)
        stats = first.group_stats["all"][key]
        np.testing.assert_array_equal(stats["q01"], np.quantile(values, 0.01, axis=0))
        np.testing.assert_array_equal(stats["q99"], np.quantile(values, 0.99, axis=0))
        np.testing.assert_allclose(stats["std"], values.std(0))
    q01, q99 = (torch.tensor(first.group_stats["all"]["actions"][n], dtype=torch.float32) for n in ("q01", "q99"))
    ones = torch.ones(_dim(root, "actions"))
    torch.testing.assert_close(first.action_norm.normalize(q01), -ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(first.action_norm.normalize(q99), ones, atol=1e-6, rtol=0)
    again = VLADataset(DataSpec(dataset=str(root)), seed=0, progress=False)
    assert again.stats_source == "cache " + first.stats_source.split(" ", 1)[1]
    _set_value(first.reader.data_file(len(first) - 1), "actions", 0, 0, 9.0)  # content changed
    changed = VLADataset(DataSpec(dataset=str(root)), seed=0, progress=False)
    assert changed.stats_source.startswith("computed ") and changed.stats_source != first.stats_source
    assert changed.group_stats["all"]["actions"]["max"][0] == 9.0


def test_mixed_suites_get_their_own_statistics(tmp_path: Path) -> None:
    root = _copy(VARIANTS[0], tmp_path)
    tasks = _suites(LeRobotReader(root).num_episodes)
    _retask(root, tasks)
    dataset = VLADataset(DataSpec(dataset=str(root)), seed=0, progress=False)
    assert [dataset.group_of(e) for e in range(len(tasks))] == [task_groups()[t] for t in tasks]
    assert set(dataset.group_stats) == {"libero_goal", "libero_object"}
    reader = dataset.reader
    actions = reader.column("actions").astype(np.float64)
    goal = np.concatenate([np.arange(*reader.episode_bounds(e)) for e, t in enumerate(tasks) if t == GOAL])
    np.testing.assert_array_equal(dataset.group_stats["libero_goal"]["actions"]["q99"], np.quantile(actions[goal], 0.99, axis=0))
    np.testing.assert_array_equal(dataset.group_stats["libero_object"]["actions"]["min"], actions[slice(*reader.episode_bounds(1))].min(0))
    row = reader.episode_bounds(1)[0] + 2
    expected = dataset.action_norms["libero_object"].normalize(torch.tensor(reader.column("actions")[row]))
    assert torch.equal(dataset[row]["actions"][0], expected)
    assert not torch.equal(expected, dataset.action_norms["libero_goal"].normalize(torch.tensor(reader.column("actions")[row])))
    pooled = VLADataset(DataSpec(dataset=str(root), groups="none"), seed=0, progress=False)
    assert list(pooled.group_stats) == ["all"]
    torch.testing.assert_close(dataset.action_norm.low, pooled.action_norm.low)  # several groups: the pooled fallback


def test_explicit_keys_win_and_bad_keys_name_the_setting(tmp_path: Path) -> None:
    root = str(_copy(VARIANTS[0], tmp_path))
    reader = LeRobotReader(root)
    dataset = VLADataset(DataSpec(dataset=root, state_key="actions", action_key="actions", cameras={"wrist": "wrist_image"}),
                         seed=0, reader=reader, progress=False)
    assert (dataset.keys.state, dataset.keys.origin["state"], dataset.slots) == ("actions", "spec", ["wrist"])
    with pytest.raises(RocketError, match="data.state_key 'observation.state' \\(spec\\) is not a feature.*state, actions"):
        VLADataset(DataSpec(dataset=root, state_key="observation.state"), seed=0, reader=reader)
    with pytest.raises(RocketError, match="unknown data.preset 'nope'"):
        VLADataset(DataSpec(dataset=root, preset="nope"), seed=0, reader=reader)


def test_nonfinite_values_are_refused_unless_allowed(tmp_path: Path) -> None:
    root = _copy(VARIANTS[0], tmp_path)
    path = LeRobotReader(root).data_file(0)
    _set_value(path, "state", 0, _dim(root, "state") - 1, float("inf"))
    with pytest.raises(RocketError, match=f"'{path}' holds a non-finite 'state'.*--allow-nonfinite"):
        VLADataset(DataSpec(dataset=str(root)), seed=0, progress=False)
    allowed = VLADataset(DataSpec(dataset=str(root), allow_nonfinite=True), seed=0, progress=False)
    assert allowed.group_stats["all"]["state"]["count"].tolist() == [len(allowed) - 1]  # the bad frame is left out
    assert np.isfinite(allowed.group_stats["all"]["state"]["q99"]).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_inspect_prints_version_keys_and_statistics(variant: str) -> None:
    root = PARENT / variant / "dataset"
    info = json.loads((root / "meta/info.json").read_text())
    code, output = run_rocket("data", "inspect", str(root), "--preset", "physical-intelligence/libero")
    assert code == 0, output
    lines = output.splitlines()
    assert f"format     LeRobot {info['codebase_version']}" in lines
    assert f"fps        {info['fps']}" in lines
    assert f"frames     {info['total_frames']} in {info['total_episodes']} episodes" in lines
    for key, feature in info["features"].items():
        assert any(line.split()[:2] == [key, feature["dtype"]] and str(feature["shape"]) in line
                   for line in lines if line.startswith(f"  {key} ")), key
    shipped = "meta/stats.json" if info["codebase_version"] == "v2.0" else "meta/episodes_stats.jsonl (aggregated)"
    assert f"statistics {shipped}" in lines
    assert "  state                        min, max, mean, std  (missing q01, q99)" in lines
    assert "  actions                      min, max, mean, std  (missing q01, q99)" in lines
    assert "  state    state  (preset physical-intelligence/libero)" in lines
    assert "  action   actions  (preset physical-intelligence/libero)" in lines
    assert any(line.startswith("  cameras  image <- image, wrist_image <- wrist_image") for line in lines)
    assert not (root / ".rocket").exists()
