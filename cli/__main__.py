"""`python -m cli` runs the `rocket` command."""
from cli.main import run

run()
