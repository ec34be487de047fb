"""data.episodes / data.max_frames (issue 21): train on part of a dataset, LeRobot's `episodes=` plus a frame cap."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rocket_core.data import DataSpec, VLADataset
from rocket_core.errors import RocketError
from tests.conftest import SHARED_FIXTURES

V21 = SHARED_FIXTURES / "lerobot-v2" / "v2.1-image" / "dataset"  # episodes of 7, 9 and 6 frames


def _dataset(**fields: object) -> VLADataset:
    return VLADataset(DataSpec(dataset=str(V21), **fields), seed=0, progress=False)


def test_episodes_select_their_rows_in_dataset_order() -> None:
    ds = _dataset(episodes=[2, 0])
    assert len(ds) == 13
    rows = [int(ds[i]["index"]) for i in range(len(ds))]
    assert rows == [*range(0, 7), *range(16, 22)]
    assert ds[7]["task"] == "put the cream cheese in the bowl"


def test_max_frames_caps_the_selection_and_chunks_keep_the_episode() -> None:
    ds = _dataset(episodes=[1], max_frames=4)
    assert [int(ds[i]["index"]) for i in range(len(ds))] == [7, 8, 9, 10]
    # the last kept frame's chunk reads the episode's following actions, not padding
    assert not ds[3]["action_is_pad"][:5].any()
    whole = _dataset()
    assert len(_dataset(max_frames=5)) == 5 and len(whole) == 22
    # statistics stay the whole dataset's: the same frame normalises the same way
    np.testing.assert_array_equal(ds[0]["actions"].numpy(), whole[7]["actions"].numpy())


def test_unknown_or_bad_episodes_fail_in_one_line() -> None:
    with pytest.raises(RocketError, match="has no episode 5"):
        _dataset(episodes=[0, 5])
    for bad in ([], [1, 1], [-1]):
        with pytest.raises(ValidationError, match="distinct episode indices"):
            DataSpec(episodes=bad)
    with pytest.raises(ValidationError):
        DataSpec(max_frames=0)
