"""Benchmark plugins (`rocket eval`). Import-light: simulator modules (`*_sim.py`) run inside the
benchmarks' own environments, so this package imports nothing heavy; `plugin` registers the classes."""
