"""Where a dataset comes from, decided without reading it (no numpy, no pyarrow): a dry run checks this much.

`bundled` (or no dataset at all) names the small synthetic dataset shipped in the package; a path must
hold `meta/info.json`; anything else must look like a Hub dataset repo id (`owner/name`).
"""
from __future__ import annotations

import re
from pathlib import Path

from rocket_core.errors import RocketError

BUNDLED = "bundled"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def bundled_dataset_path() -> Path:
    """Root of the small synthetic LeRobot v3 dataset shipped in the package (scripts/make_bundled_dataset.py)."""
    return Path(__file__).resolve().parent / "bundled"


def local_dataset_root(source: str | Path | None) -> Path | None:
    """The dataset folder `source` names (`bundled`/None: the shipped one), or None for a Hub repo id.

    A path that does not exist or holds no LeRobot dataset is one line naming the fix.
    """
    if source is None or str(source) == BUNDLED:
        return bundled_dataset_path()
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "meta" / "info.json").is_file():
            raise RocketError(
                f"'{path}' is not a LeRobot dataset (no meta/info.json); "
                "give the dataset root, the folder holding meta/ and data/"
            )
        return path.resolve()
    text = str(source)
    if text.startswith((".", "/", "~")) or not _REPO_ID.match(text):
        raise RocketError(f"dataset folder '{text}' does not exist; check the path, give a Hub repo id like "
                          f"'owner/name', or '{BUNDLED}' for the bundled dataset")
    return None
