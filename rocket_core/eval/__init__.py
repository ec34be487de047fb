"""Evaluation: a policy server (`rocket serve`), benchmark clients (`rocket eval`) and `rocket doctor`.

The modules a simulator worker imports (`protocol`, `wire`, `client`, `rollout`, `worker`, `video`) need
only numpy, msgpack and websockets, so they also run inside a benchmark's isolated environment,
whose pins (numpy, torch, Python) conflict with ours. `policy` and `server` import torch and the VLA plugins.
"""
