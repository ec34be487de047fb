"""Package layout: the repository keeps `plugins/`, `cli/` and `recipes/`, installed under names that are ours.

Only `rocket_*` top-level import names are installed, so no other distribution's `cli` or `plugins` package can
shadow ours (or be shadowed). Everything else lives in pyproject.toml.
"""
from setuptools import find_packages, setup

MAPPED = {"rocket_plugins": "plugins", "rocket_cli": "cli", "rocket_recipes": "recipes"}

packages = find_packages(include=["rocket_core", "rocket_core.*"])
for name, folder in MAPPED.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=MAPPED)
