"""A simulator worker: runs episodes for `rocket eval`, in the benchmark's own Python environment.

    python -m rocket_core.eval.worker --sim rocket_plugins.benchmarks.libero.sim --url ws://127.0.0.1:8000
    python -m rocket_core.eval.worker --sim ... --list SUITE --protocol '{...}'

`--url expert` or `--url random` runs a policy inside the worker instead of asking a server
(`LOCAL_POLICIES`): the environment's scripted expert, or uniform random actions.

Reads one JSON job per stdin line (`{"suite", "task", "episode", "protocol", "video": path|null,
"record": path|null}`) and
answers each with one stdout line `@@rocket {json}` (anything else on stdout is simulator chatter). The
environment of a task is kept while consecutive jobs share the task. Import-light: numpy, msgpack,
websockets and the simulator.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

MARK = "@@rocket "
LOCAL_POLICIES = {"expert": "the benchmark's scripted expert, reading the simulator's state",
                  "random": "uniform random actions in [-1, 1] (chance level)"}


def local_metadata(name: str) -> dict[str, Any]:
    """What a worker-side policy reports in place of a server's metadata."""
    return {"vla": name, "source": LOCAL_POLICIES[name]}


def local_policy(name: str, env: Any, action_dim: int, seed: list[int]) -> Callable[[dict[str, Any]], Any]:
    """`infer` of a worker-side policy for one episode (`seed`: the random policy's, per episode)."""
    if name == "expert":
        if not hasattr(env, "expert"):
            raise RuntimeError("this benchmark has no scripted expert")
        expert: Callable[[dict[str, Any]], Any] = env.expert
        return expert
    import numpy as np

    rng = np.random.default_rng(seed)
    return lambda request: rng.uniform(-1.0, 1.0, size=(1, action_dim))


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True, help="module with list_tasks(suite, protocol) and make_env(...)")
    ap.add_argument("--url", help="policy server ws://host:port, or a local policy: expert, random")
    ap.add_argument("--list", dest="list_suite", help="print the tasks of a suite and exit")
    ap.add_argument("--protocol", help="protocol JSON (for --list)")
    args = ap.parse_args(argv)

    from rocket_core.eval.protocol import Protocol

    sim = importlib.import_module(args.sim)
    if args.list_suite:
        proto = Protocol.from_dict(json.loads(args.protocol)) if args.protocol else None
        emit({"tasks": sim.list_tasks(args.list_suite, proto)})
        return 0

    from rocket_core.eval.client import PolicyClient
    from rocket_core.eval.rollout import run_episode
    from rocket_core.eval.video import write_mp4

    client = None if args.url in LOCAL_POLICIES else PolicyClient(args.url)
    emit({"ready": True, "pid": os.getpid(),
          "policy": local_metadata(args.url) if client is None else client.metadata})
    env, env_key = None, None
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            proto = Protocol.from_dict(job["protocol"])
            key = (job["suite"], job["task"], json.dumps(job["protocol"], sort_keys=True))
            made = 0.0
            if key != env_key:
                if env is not None:
                    env.close()
                t0 = time.perf_counter()
                env = sim.make_env(job["suite"], job["task"], proto)
                made, env_key = time.perf_counter() - t0, key
            assert env is not None  # made above for the first job
            infer = client.infer if client is not None else local_policy(
                args.url, env, proto.action_dim, [proto.seed, job["task"], job["episode"], 1])
            result = run_episode(env, infer, proto, job["episode"], record=bool(job.get("video")),
                                 trace=bool(job.get("record")))
            trace = result.pop("trace", None)
            if job.get("record"):
                from rocket_core.eval.record import save_episode

                save_episode(job["record"], trace or [], env.instruction)
            frames = result.pop("frames", None)
            if frames and job.get("video"):
                write_mp4(job["video"], frames, fps=job.get("fps", 20))
                result["video"] = job["video"]
                result["video_frames"] = len(frames)
            result.update(instruction=env.instruction, env_create_seconds=round(made, 3))
            emit({"job": job["id"], "result": result})
        except Exception as exc:  # noqa: BLE001 - report the job's failure, keep the worker
            emit({"job": job["id"], "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
            env, env_key = None, None
    if env is not None:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
