"""Isolated Python environments for benchmarks whose pins conflict with ours (`rocket eval --setup`).

Each lives in `$ROCKET_ENVS/<name>` (default `~/.cache/rocket/envs/<name>`): a venv made with the running
Python, filled with pip, plus a `rocket-env.json` stamp recording what was installed; a set-up that
finds a complete stamp for the same request reuses the environment.

System libraries a simulator needs are only listed unless the user agreed (`rocket eval --setup X --yes`,
i.e. inside `system_installs(True)`): then they are installed with apt-get (root or passwordless sudo);
otherwise the exact apt-get/dnf line is printed and the set-up goes on with the Python part.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rocket_core.errors import RocketError

Log = Callable[[str], None]


def envs_root() -> Path:
    return Path(os.environ.get("ROCKET_ENVS", Path.home() / ".cache" / "rocket" / "envs")).expanduser()


_INSTALL_ALLOWED: ContextVar[bool] = ContextVar("rocket_system_installs", default=False)

# Debian package -> the Fedora/RHEL package with the same files (for the printed dnf line).
DNF_NAMES = {"libosmesa6": "mesa-libOSMesa", "libegl1": "libglvnd-egl", "libgl1": "libglvnd-glx",
             "libglx-mesa0": "mesa-libGL", "libegl-mesa0": "mesa-libEGL", "libvulkan1": "vulkan-loader",
             "mesa-vulkan-drivers": "mesa-vulkan-drivers", "libmagickwand-dev": "ImageMagick-devel"}


@contextmanager
def system_installs(allowed: bool) -> Iterator[None]:
    """Within this block `apt_install` may install system packages (the user passed --yes)."""
    token = _INSTALL_ALLOWED.set(allowed)
    try:
        yield
    finally:
        _INSTALL_ALLOWED.reset(token)


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


def _missing_rpms(packages: Sequence[str]) -> list[str]:
    names = [DNF_NAMES.get(p, p) for p in packages]
    return [n for n in names if subprocess.run(["rpm", "-q", n], capture_output=True).returncode != 0]


def install_steps(packages: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(missing packages, the commands that install them), Debian names mapped for dnf; ([], []) when none is
    missing or the package manager is unknown."""
    if shutil.which("dpkg-query") is not None:
        missing = missing_debs(packages)
        return missing, [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "--no-install-recommends", *missing]]
    if shutil.which("dnf") is not None and shutil.which("rpm") is not None:
        missing = _missing_rpms(packages)
        return missing, [["dnf", "install", "-y", *missing]]
    return [], []


def apt_install(packages: Sequence[str], log: Log = print) -> None:
    """Install the missing system packages when the user agreed (`system_installs(True)`), else print the
    exact command and return, so the set-up goes on with the Python part."""
    missing, steps = install_steps(packages)
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    line = " && ".join(" ".join(sudo + step) for step in steps)
    log(f"system packages needed: {' '.join(missing)}")
    if not _INSTALL_ALLOWED.get():
        log(f"not installing them without --yes; to install them yourself run: {line}")
        return
    if sudo and (shutil.which("sudo") is None or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode):
        raise RocketError(f"this user cannot install system packages; run: {line}")
    log(line)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in steps:
        res = subprocess.run([*sudo, *(["-n"] if sudo else []), *step], capture_output=True, text=True, env=env)
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

    def info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads(self.stamp.read_text())
            return info
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

    def run(self, code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def site_packages(self) -> Path:
        out = self.run("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(out.stdout.strip())

    def write_stamp(self, **data: object) -> None:
        self.stamp.write_text(json.dumps({"complete": True, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **data},
                                         indent=2))

    def pip_versions(self, names: Sequence[str]) -> dict[str, str]:
        code = ("import json, importlib.metadata as m\nout={}\nfor n in %r:\n"  # noqa: UP031 (a code template)
                "    try: out[n]=m.version(n)\n    except m.PackageNotFoundError: out[n]='not installed'\n"
                "print(json.dumps(out))" % (list(names),))
        res = self.run(code)
        return json.loads(res.stdout) if res.returncode == 0 else {}


def packages_path(packages: Sequence[str]) -> Path:
    """A folder holding only `packages` (links to where this interpreter imports them from), for a worker's
    PYTHONPATH: the parent of an installed package is all of site-packages, which would shadow the
    benchmark environment's own pins. Keyed by what it links, built atomically, reused."""
    import hashlib
    import importlib.util

    links: dict[str, Path] = {}
    for name in dict.fromkeys(packages):
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise RocketError(f"cannot find the package '{name}' to hand to a benchmark worker; is it installed?")
        if spec.submodule_search_locations:
            links[name] = Path(list(spec.submodule_search_locations)[0]).resolve()
        elif spec.origin:
            links[f"{name}.py"] = Path(spec.origin).resolve()
    digest = hashlib.sha256(json.dumps({k: str(v) for k, v in sorted(links.items())}).encode()).hexdigest()[:16]
    folder = envs_root().parent / "pythonpath" / digest
    if folder.is_dir():
        return folder
    tmp = folder.with_name(f".{digest}-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for link, target in links.items():
        (tmp / link).symlink_to(target, target_is_directory=target.is_dir())
    try:
        tmp.replace(folder)
    except OSError:  # another process made it first: same links
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
