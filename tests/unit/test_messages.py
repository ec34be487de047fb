"""Output that says what happened (issue 15, point 7): messages name what the user gave, not a generic thing."""
from __future__ import annotations

from pathlib import Path

import pytest

from rocket_core.errors import RocketError
from rocket_core.select.layermap import read_layer_map
from rocket_core.train.cache import check_disk


@pytest.mark.parametrize("dtype, suggested", [("fp32", True), ("fp16", False), ("bf16", False)])
def test_cache_disk_hint_suggests_a_smaller_dtype_only_when_one_exists(tmp_path: Path, dtype: str,
                                                                         suggested: bool) -> None:
    with pytest.raises(RocketError) as err:
        check_disk(tmp_path, 1 << 62, dtype)
    assert ("--dtype fp16/bf16" in str(err.value)) is suggested
    assert "store fewer layers" in str(err.value) and "--cache-dir" in str(err.value)


def test_layer_map_file_is_called_a_layer_map_file(tmp_path: Path) -> None:
    with pytest.raises(RocketError, match=r"^layer-map file '.*nope.yaml' does not exist"):
        read_layer_map(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("vla: [1, 2]\nvla: [3]\nteacher: [1]\n")
    with pytest.raises(RocketError, match=r"^layer-map file '.*bad.yaml' is not valid YAML: duplicate key 'vla'"):
        read_layer_map(tmp_path / "bad.yaml")


def test_layer_map_write_is_atomic_and_spares_the_users_files(tmp_path: Path) -> None:
    from rocket_core.select.layermap import write_layer_map
    from rocket_core.specs import LayerMap

    (tmp_path / "layers.yaml.tmp").write_text("the user's own notes")
    write_layer_map(tmp_path / "layers.yaml", LayerMap(vla=[2, 4], teacher=[1, 3]), {"rule": "balanced:2"})
    assert read_layer_map(tmp_path / "layers.yaml").pairs == [(2, 1), (4, 3)]
    assert (tmp_path / "layers.yaml.tmp").read_text() == "the user's own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.yaml", "layers.yaml.tmp"]
