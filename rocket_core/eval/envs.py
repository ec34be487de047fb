"""Isolated Python environments for benchmarks whose pins conflict with ours (`rocket eval --setup`).

Each lives in `$ROCKET_ENVS/<name>` (default `~/.cache/rocket/envs/<name>`): a venv made with the running
Python, filled with pip, plus a `rocket-env.json` stamp recording what was installed; a set-up that
finds a complete stamp for the same request reuses the environment. Debian libraries a simulator needs
are installed with apt-get when missing (root or passwordless sudo), otherwise the command is named.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from rocket_core.errors import RocketError

Log = Callable[[str], None]


def envs_root() -> Path:
    return Path(os.environ.get("ROCKET_ENVS", Path.home() / ".cache" / "rocket" / "envs")).expanduser()


def missing_debs(packages: Sequence[str]) -> list[str]:
    """Debian packages of `packages` that dpkg does not report as installed ([] off Debian)."""
    if shutil.which("dpkg-query") is None:
        return []
    missing = []
    for pkg in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if out.returncode != 0 or "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def apt_install(packages: Sequence[str], log: Log = print) -> None:
    missing = missing_debs(packages)
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
            raise RocketError(f"Debian packages {' '.join(missing)} are missing and this user cannot install them; "
                              f"run: sudo apt-get update && sudo {' '.join(cmd)}")
        prefix = ["sudo", "-n"]
    log(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], cmd):
        res = subprocess.run(prefix + step, capture_output=True, text=True, env=env)
        if res.returncode:
            raise RocketError(f"`{' '.join(step)}` failed: {res.stderr.strip()[-500:]}")


@dataclass
class IsolatedEnv:
    name: str
    root: Path = field(default_factory=envs_root)

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.path / "rocket-env.json"

    def info(self) -> dict | None:
        try:
            return json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        info = self.info()
        return bool(info and info.get("complete") and self.python.exists())

    def create(self, log: Log = print, fresh: bool = False) -> None:
        """Make the venv (kept if it exists, unless `fresh`: then it is rebuilt from scratch)."""
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        if self.python.exists():
            return
        log(f"creating {self.path} ({sys.executable} -m venv)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([sys.executable, "-m", "venv", str(self.path)], capture_output=True, text=True)
        if res.returncode:
            raise RocketError(f"cannot create a venv at {self.path}: {res.stderr.strip()[-400:]}")

    def pip(self, *args: str, log: Log = print) -> None:
        cmd = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
        log("pip install " + " ".join(args))
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")] or res.stderr.splitlines()[-3:]
            raise RocketError(f"pip install in {self.path} failed: {' '.join(errors)[-800:]}")

    def run(self, code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def site_packages(self) -> Path:
        out = self.run("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(out.stdout.strip())

    def write_stamp(self, **data: object) -> None:
        self.stamp.write_text(json.dumps({"complete": True, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **data},
                                         indent=2))

    def pip_versions(self, names: Sequence[str]) -> dict[str, str]:
        code = ("import json, importlib.metadata as m\nout={}\nfor n in %r:\n"
                "    try: out[n]=m.version(n)\n    except m.PackageNotFoundError: out[n]='not installed'\n"
                "print(json.dumps(out))" % (list(names),))
        res = self.run(code)
        return json.loads(res.stdout) if res.returncode == 0 else {}
