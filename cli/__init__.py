"""The `rocket` command line (typer + rich). Thin: parse -> spec -> core call.

Installed (and linked at the repository root) as `rocket_cli`; see `rocket_plugins` for why another name fails.
"""
if __name__ != "rocket_cli":
    raise ImportError(f"import rocket_cli, not {__name__}: this folder is installed as rocket_cli")
