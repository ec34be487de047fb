"""The `rocket` command line (typer + rich). Thin: parse -> spec -> core call."""
