"""rocket core: registry, typed specs, contracts and the ROCKET alignment math.

Nothing here imports a concrete plugin; plugins depend on the core, never the reverse.
"""
from rocket_core.errors import RocketError
from rocket_core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["RocketError", "hookimpl", "__version__"]
