"""Start a process that stops at a named point of `rocket_core.testhook`, so a test kills or interrupts it there."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


def start_paused(cmd: list[str], point: str, markers: Path, timeout: float = 300, **popen: Any) -> tuple[subprocess.Popen, Path]:
    """Run `cmd` until it waits at `point`; returns the process and the marker (delete it to let the process go on)."""
    markers.mkdir(parents=True, exist_ok=True)
    env = {**popen.pop("env", os.environ), "ROCKET_TEST_PAUSE_AT": point, "ROCKET_TEST_PAUSE_DIR": str(markers)}
    proc = subprocess.Popen(cmd, env=env, **popen)
    marker, deadline = markers / point, time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"{cmd} exited {proc.returncode} before reaching {point}"
        assert time.monotonic() < deadline, f"{cmd} did not reach {point} in {timeout} s"
        time.sleep(0.01)
    return proc, marker
