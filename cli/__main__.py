"""`python -m rocket_cli` runs the `rocket` command."""
from rocket_cli.main import run

run()
