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
Every loop is bounded (the phases end after `--requests` good requests; the load processes stop then).
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

from rocket_core.eval.client import PolicyClient, wait_healthy  # noqa: E402
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


def median_latency(client: PolicyClient, obs: dict[str, Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.infer(obs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_phase(url: str, kinds: list[str], requests: int, warmup: float, server_pid: int
              ) -> tuple[float, dict[str, int]]:
    """The good client's median latency while `kinds` load clients run; counts include the server's CPU share."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        stop, counts = manager.Event(), manager.dict({k: 0 for k in (*KINDS, "valid")})
        proc = ctx.Process(target=_load, args=(url, kinds, stop, counts))
        proc.start()
        try:
            time.sleep(warmup)
            with PolicyClient(url) as client:
                obs = observation(client.metadata)
                client.infer(obs)
                cpu, t0 = cpu_seconds(server_pid), time.perf_counter()
                latency = median_latency(client, obs, requests)
                counts["server_cpu"] = (cpu_seconds(server_pid) - cpu) / (time.perf_counter() - t0)
        finally:
            stop.set()
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
        return latency, dict(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=20, help="good-client requests per phase (median)")
    ap.add_argument("--vla", default="openvla")
    args = ap.parse_args()

    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--vla", args.vla, "--preset", "tiny", "--port",
                               str(port), "--idle-timeout", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_healthy(url, timeout=300)
        with PolicyClient(url) as client:
            obs = observation(client.metadata)
            for _ in range(3):
                client.infer(obs)  # warm up
            cpu, t0 = cpu_seconds(server.pid), time.perf_counter()
            idle = median_latency(client, obs, args.requests)
            idle_cpu = (cpu_seconds(server.pid) - cpu) / (time.perf_counter() - t0)
        print(f"idle: good client median {idle * 1000:.1f} ms over {args.requests} requests ({args.vla} tiny); "
              f"server CPU {idle_cpu:.2f} cores")

        hostile_kinds = [KINDS[k % len(KINDS)] for k in range(args.clients)]
        hostile, counts = run_phase(url, hostile_kinds, args.requests, warmup=3.0, server_pid=server.pid)
        mix = ", ".join(f"{hostile_kinds.count(k)} {k}" for k in KINDS)
        print(f"hostile ({mix}): good client median {hostile * 1000:.1f} ms; refused {counts['oversized']} oversized "
              f"frames, {counts['malformed']} malformed messages, {counts['idle']} idle connections closed; "
              f"server CPU {counts['server_cpu']:.2f} cores")
        print(f"good_client_latency_ratio = {hostile / idle:.2f}  (target <= 2.0)")

        busy, counts = run_phase(url, ["valid"] * args.clients, args.requests, warmup=3.0, server_pid=server.pid)
        print(f"busy ({args.clients} valid clients, {counts['valid']} of their requests served): "
              f"good client median {busy * 1000:.1f} ms; server CPU {counts['server_cpu']:.2f} cores")
        print(f"busy_latency_ratio = {busy / idle:.2f}  (fair share: about clients + 1 = {args.clients + 1})")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
