"""Built-in plugins, installed as `rocket_plugins` (the repository keeps the design's `plugins/` folder).

`rocket_plugins` at the repository root is a link to this folder, so IDEs and type checkers resolve the installed
name without setuptools' editable import hook. Imported under any other name (`import plugins` from the
repository root) these files would load a second time beside the registered copy, with their own classes and
state, so that import fails instead.
"""
if __name__ != "rocket_plugins":
    raise ImportError(f"import rocket_plugins, not {__name__}: this folder is installed as rocket_plugins")
