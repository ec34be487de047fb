"""A good client's latency on `rocket serve` under load, against the same client on an idle server.

    python benchmarks/serve_load.py [--clients 10] [--requests 20] [--vla openvla]

Starts `rocket serve --vla VLA --preset tiny` on a free loopback port (its own process), then measures the
median round trip of one well-behaved client in three phases, side by side:
1. idle: the good client alone (the baseline);
2. hostile: `--clients` clients (in another process) send frames over the limit, malformed messages
   (garbage, a pickle payload, oversized images) or sit idle until the server drops them. They must be
   refused cheaply: prints `good_client_latency_ratio` (target <= 2.0 on an idle 2-core machine);
3. busy: `--clients` clients send valid observations back to back. Round-robin serving gives each a fair
   share, so the good client waits about (clients + 1) inferences: prints `busy_latency_ratio` and that target.
The phases alternate for `--rounds` rounds (drift on a shared machine hits them alike); every loop is
bounded (a phase ends after `--requests` good requests and its load process stops then).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rocket_core.eval.client import PolicyClient, health, wait_healthy  # noqa: E402
from rocket_core.eval.wire import packb  # noqa: E402

KINDS = ("oversized", "malformed", "idle")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def observation(meta: dict[str, Any], side: int = 224, task: str = "put the bowl on the plate") -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"images": [rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for _ in range(meta["num_images"])],
            "state": np.zeros(meta.get("state_dim") or 1, np.float32), "task": task}


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("a pickle ran on the server",))


def _malformed(meta: dict[str, Any], limits: dict[str, Any]) -> list[bytes]:
    """Messages that decode to nothing servable, each refused before inference."""
    evil = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": pickle.dumps(_Payload())}
    wide = observation(meta, side=8)
    wide["images"] = [np.zeros((limits["image_side"] + 1, 8, 3), np.uint8)] * meta["num_images"]
    return [b"\xc1garbage" * 64, msgpack.packb({"kind": "infer", "obs": {"task": "x", "state": evil}}),
            packb({"kind": "infer", "obs": wide}), packb({"kind": "infer", "obs": {**observation(meta, 8), "task": "x" * 50_000}}),
            packb({"kind": "reset"}), packb([1, 2, 3])]


def _hostile(url: str, kind: str, stop: Any, counts: Any) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    from rocket_core.eval.wire import unpackb

    while not stop.is_set():
        try:
            with connect(url, max_size=None, compression=None, open_timeout=10) as ws:
                first = unpackb(ws.recv())
                meta, limits = first["policy"], first["limits"]
                if kind == "oversized":
                    ws.send(b"\0" * (limits["frame_bytes"] + (1 << 20)))
                    ws.recv(timeout=10)
                elif kind == "malformed":
                    messages = _malformed(meta, limits)
                    for k in range(10_000):
                        if stop.is_set():
                            return
                        ws.send(messages[k % len(messages)])
                        assert unpackb(ws.recv(timeout=10))["kind"] == "error"
                        counts[kind] += 1
                else:
                    ws.recv(timeout=60)  # until the idle timeout closes it
        except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
            counts[kind] += kind != "malformed"
            time.sleep(0.01)


def _valid(url: str, stop: Any, counts: Any) -> None:
    with PolicyClient(url) as client:
        obs = observation(client.metadata)
        for _ in range(100_000):
            if stop.is_set():
                return
            client.infer(obs)
            counts["valid"] += 1


def _load(url: str, kinds: list[str], stop: Any, counts: Any) -> None:
    """One process holding all load clients as threads (spawned: no state shared with the parent)."""
    import logging

    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # the cut-off clients' own complaints
    threads = [threading.Thread(target=_valid if k == "valid" else _hostile,
                                args=(url, stop, counts) if k == "valid" else (url, k, stop, counts), daemon=True)
               for k in kinds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux; 0 elsewhere): what the load cost the server."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latencies(client: PolicyClient, obs: dict[str, Any], n: int) -> list[tuple[float, float]]:
    """(round trip, the server's own inference time) of `n` requests, in seconds."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = client.request({"kind": "infer", "obs": obs})
        times.append((time.perf_counter() - t0, reply["timing"]["infer_ms"] / 1000))
    return times


def measure(url: str, kinds: list[str], requests: int, server_pid: int, warmup: float = 3.0
            ) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """The good client's latencies while `kinds` load clients run (none: idle), the load's counts and the
    server's CPU (cores) meanwhile."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        stop, counts = manager.Event(), manager.dict({k: 0 for k in (*KINDS, "valid")})
        proc = ctx.Process(target=_load, args=(url, kinds, stop, counts)) if kinds else None
        if proc is not None:
            proc.start()
            time.sleep(warmup)
        try:
            with PolicyClient(url) as client:
                obs = observation(client.metadata)
                client.infer(obs)
                served = health(url)["requests"]
                cpu, t0 = cpu_seconds(server_pid), time.perf_counter()
                times = latencies(client, obs, requests)
                window = time.perf_counter() - t0
                counts["server_cpu"] = (cpu_seconds(server_pid) - cpu) / window
                counts["service_s"] = window / max(1, health(url)["requests"] - served)  # per request, all clients
        finally:
            stop.set()
            if proc is not None:
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.terminate()
        return times, dict(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=10, help="good-client requests per phase and round")
    ap.add_argument("--rounds", type=int, default=3, help="idle/hostile/busy rounds, interleaved against drift")
    ap.add_argument("--vla", default="openvla")
    args = ap.parse_args()

    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "rocket_cli", "serve", "--vla", args.vla, "--preset", "tiny", "--port",
                               str(port), "--idle-timeout", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    hostile_kinds = [KINDS[k % len(KINDS)] for k in range(args.clients)]
    phases = {"idle": [], "hostile": hostile_kinds, "busy": ["valid"] * args.clients}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in phases}
    totals: dict[str, dict[str, float]] = {name: {} for name in phases}
    try:
        wait_healthy(url, timeout=300)
        with PolicyClient(url) as client:
            latencies(client, observation(client.metadata), 3)  # warm up
        for r in range(args.rounds):
            line = []
            for name, kinds in phases.items():
                got, counts = measure(url, kinds, args.requests, server.pid)
                times[name] += got
                line.append(f"{name} {statistics.median(t for t, _ in got) * 1000:.1f} ms")
                print(f"round {r + 1}: " + ", ".join(line), end="\r" if len(line) < len(phases) else "\n", flush=True)
                for key, value in counts.items():
                    mean = key in ("server_cpu", "service_s")
                    totals[name][key] = totals[name].get(key, 0) + value / (args.rounds if mean else 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    med = {name: statistics.median(t for t, _ in got) for name, got in times.items()}
    infer = {name: statistics.median(i for _, i in got) for name, got in times.items()}
    n = args.rounds * args.requests
    print(f"idle: good client median {med['idle'] * 1000:.1f} ms over {n} requests ({args.vla} tiny); "
          f"server CPU {totals['idle']['server_cpu']:.2f} cores")
    h = totals["hostile"]
    mix = ", ".join(f"{hostile_kinds.count(k)} {k}" for k in KINDS)
    print(f"hostile ({mix}): good client median {med['hostile'] * 1000:.1f} ms; refused {h['oversized']:.0f} "
          f"oversized frames, {h['malformed']:.0f} malformed messages, closed {h['idle']:.0f} idle connections; "
          f"server CPU {h['server_cpu']:.2f} cores")
    print(f"good_client_latency_ratio = {med['hostile'] / med['idle']:.2f}  (target <= 2.0)")
    b = totals["busy"]
    print(f"busy ({args.clients} valid clients): good client median {med['busy'] * 1000:.1f} ms; the server "
          f"answered a request every {b['service_s'] * 1000:.1f} ms (model time {infer['busy'] * 1000:.1f} ms; "
          f"idle {med['idle'] * 1000:.1f} ms); server CPU {b['server_cpu']:.2f} cores")
    print(f"busy_latency_ratio = {med['busy'] / med['idle']:.2f}  (fair share: about clients + 1 = {args.clients + 1} "
          "when a busy request costs what an idle one does)")
    print(f"busy_requests_waited = {med['busy'] / b['service_s']:.2f}  (the good client's wait in the busy server's "
          f"requests: clients + 1 = {args.clients + 1} when round-robin is fair)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
