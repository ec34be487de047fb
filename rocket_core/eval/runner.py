"""`rocket eval`: episodes -> workers -> per-episode records -> results JSON (resumable).

Layout of an output folder:
  run.json                     benchmark, suites, protocol per suite, policy metadata (fixed at the first run)
  episodes/<suite>/task-<i>/ep-<k>.json   one record per finished episode (atomic); resume skips these
  videos/<suite>/task-<i>-ep-<k>-<success|failure>.mp4
  workers/worker-<n>.log       simulator output of each worker
  results.json                 per task, per suite (and per group, e.g. LIBERO-Plus dimension), overall,
                               with the protocol, its deviations from the preset, versions and timings
A run interrupted at any point continues with the same command: finished episodes are not run again.
"""
from __future__ import annotations

import json
import os
import platform
import queue
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rocket_core.contracts import BenchmarkAdapter as Benchmark
from rocket_core.errors import RocketError
from rocket_core.eval.protocol import Protocol
from rocket_core.eval.worker import MARK

RESULTS_VERSION = 1


@dataclass
class SuitePlan:
    suite: str
    protocol: Protocol
    preset: Protocol
    tasks: list[dict[str, Any]] = field(default_factory=list)  # from the simulator's list_tasks
    reasons: dict[str, str] = field(default_factory=dict)  # why a field differs from the preset


@dataclass
class EvalConfig:
    benchmark: type[Benchmark]
    suites: list[SuitePlan]
    url: str
    out: Path
    workers: int = 1
    tasks: Sequence[int] | None = None  # task indices (None: all)
    episodes: Sequence[int] | None = None  # episode indices (None: range(trials_per_task))
    videos: str = "first"  # none | first (episode 0 of each task) | failures | all
    fps: int = 20
    policy: dict[str, Any] = field(default_factory=dict)
    extra_versions: dict[str, str] = field(default_factory=dict)
    record: Path | None = None  # write the rollouts as a LeRobot v3 dataset here (rocket_core.eval.record)


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def episode_path(out: Path, suite: str, task: int, episode: int) -> Path:
    return out / "episodes" / suite / f"task-{task:03d}" / f"ep-{episode:03d}.json"


def list_tasks(bench: type[Benchmark], suite: str, protocol: Protocol, python: str | None = None) -> list[dict[str, Any]]:
    """The suite's tasks, asked of the simulator module in the benchmark's own Python."""
    cmd = [python or bench.python(), "-m", "rocket_core.eval.worker", "--sim", bench.sim_module,
           "--list", suite, "--protocol", json.dumps(protocol.to_dict())]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **bench.worker_env()}, timeout=600)
    for line in res.stdout.splitlines():
        if line.startswith(MARK):
            tasks: list[dict[str, Any]] = json.loads(line[len(MARK):])["tasks"]
            return tasks
    raise RocketError(f"cannot list the tasks of {bench.name} suite '{suite}': "
                      f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}"
                      + (f"; set it up with: rocket eval --setup {bench.name}" if bench.env_name else ""))


def _want_video(mode: str, episode: int) -> bool:
    return mode == "all" or (mode == "first" and episode == 0) or mode == "failures"


class _Worker:
    """One simulator subprocess; `run(job)` blocks until its answer."""

    def __init__(self, index: int, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "a")
        self.log_path = log_path
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, env=env)
        self.index = index
        first = self._read()
        if first is None or not first.get("ready"):
            self.close()
            tail = log_path.read_text().strip().splitlines()[-3:]
            raise RocketError(f"simulator worker {index} did not start: {' | '.join(tail) or 'no output'} "
                              f"(log: {log_path})")

    def _read(self) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                message: dict[str, Any] = json.loads(line[len(MARK):])
                return message
            self.log.write(line)
        return None

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"job": job["id"], "error": f"worker {self.index} exited (log: {self.log_path})", "fatal": True}
        answer = self._read()
        if answer is None:
            return {"job": job["id"], "error": f"worker {self.index} exited (log: {self.log_path})", "fatal": True}
        return answer

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.log.close()


def _check_run_file(cfg: EvalConfig) -> None:
    run_file = cfg.out / "run.json"
    mine: dict[str, Any] = {"benchmark": cfg.benchmark.name,
            "protocols": {s.suite: json.loads(json.dumps(s.protocol.to_dict())) for s in cfg.suites}}
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        for suite, proto in mine["protocols"].items():
            if suite in old.get("protocols", {}) and old["protocols"][suite] != proto:
                raise RocketError(f"'{cfg.out}' holds episodes of {cfg.benchmark.name} {suite} under another "
                                  "protocol; resume with the same options or choose another --output-dir")
        mine["protocols"] = {**old.get("protocols", {}), **mine["protocols"]}
    _atomic_json(run_file, {**mine, "policy": cfg.policy, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})


def plan_jobs(cfg: EvalConfig) -> tuple[list[dict[str, Any]], int]:
    """Jobs still to run (tasks grouped so a worker keeps its environment) and how many are already done."""
    jobs: list[dict[str, Any]] = []
    done = 0
    for sp in cfg.suites:
        runnable = [t for t in sp.tasks if not t.get("skip")]
        indices = [t["index"] for t in runnable]
        if cfg.tasks is not None:
            unknown = sorted(set(cfg.tasks) - {t["index"] for t in sp.tasks})
            if unknown:
                raise RocketError(f"{cfg.benchmark.name} {sp.suite} has no task {unknown[0]}; tasks are "
                                  f"0..{len(sp.tasks) - 1}")
            indices = [i for i in indices if i in set(cfg.tasks)]
        eps = list(cfg.episodes) if cfg.episodes is not None else list(range(sp.protocol.trials_per_task))
        for ti in indices:
            task = next(t for t in sp.tasks if t["index"] == ti)
            limit = task.get("num_init_states")
            for ep in eps:
                if limit is not None and ep >= limit:
                    raise RocketError(f"{sp.suite} task {ti} has {limit} initial states; episode {ep} does not exist")
                if episode_path(cfg.out, sp.suite, ti, ep).is_file():
                    done += 1
                    continue
                video = None
                if _want_video(cfg.videos, ep):
                    video = str(cfg.out / "videos" / sp.suite / f"task-{ti:03d}-ep-{ep:03d}.mp4")
                record = None
                if cfg.record is not None:
                    record = str(cfg.record / "episodes" / sp.suite / f"task-{ti:03d}" / f"ep-{ep:03d}.npz")
                jobs.append({"id": len(jobs), "suite": sp.suite, "task": ti, "episode": ep,
                             "protocol": sp.protocol.to_dict(), "video": video, "fps": cfg.fps, "record": record})
    return jobs, done


def run_eval(cfg: EvalConfig, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every missing episode with `cfg.workers` simulator workers, then write results.json."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_run_file(cfg)
    jobs, already = plan_jobs(cfg)
    if already:
        log(f"resuming: {already} episode(s) already done in {cfg.out}, {len(jobs)} to run")
    errors: list[str] = []
    if jobs:
        _run_jobs(cfg, jobs, errors, progress)
    results = aggregate(cfg)
    _atomic_json(cfg.out / "results.json", results)
    if cfg.record is not None and not errors:
        from rocket_core.eval.record import CAMERA_KEYS, write_dataset

        write_dataset(cfg.record)
        log(f"recording: {cfg.record} (LeRobot v3, cameras {', '.join(CAMERA_KEYS)}, then image_<slot>)")
    if errors:
        raise RocketError(f"{len(errors)} episode(s) failed and were not recorded (rerun to retry them): "
                          f"{errors[0]}")
    return results


def _run_jobs(cfg: EvalConfig, jobs: list[dict[str, Any]], errors: list[str], progress: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    python = cfg.benchmark.python()
    cmd = [python, "-u", "-m", "rocket_core.eval.worker", "--sim", cfg.benchmark.sim_module, "--url", cfg.url]
    env = {**os.environ, **cfg.benchmark.worker_env()}
    n = max(1, min(cfg.workers, len(jobs)))
    todo: queue.Queue[dict[str, Any]] = queue.Queue()
    for job in jobs:
        todo.put(job)
    lock = threading.Lock()
    stats = {"success": 0, "done": 0}
    bar = Progress(TextColumn(f"{cfg.benchmark.name}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress)
    task_id = bar.add_task("episodes", total=len(jobs), rate="")
    started: list[_Worker] = []

    def work(i: int) -> None:
        try:
            w = _Worker(i, cmd, env, cfg.out / "workers" / f"worker-{i}.log")
        except RocketError as exc:
            with lock:
                errors.append(str(exc))
            return
        started.append(w)
        try:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                answer = w.run(job)
                with lock:
                    if "result" in answer:
                        _record(cfg, job, answer["result"])
                        stats["done"] += 1
                        stats["success"] += int(answer["result"]["success"])
                        rate = f"success {stats['success']}/{stats['done']}"
                        bar.update(task_id, advance=1, rate=rate)
                    else:
                        errors.append(f"{job['suite']} task {job['task']} episode {job['episode']}: {answer['error']}")
                        bar.update(task_id, advance=1)
                        if answer.get("fatal"):
                            return
        finally:
            w.close()

    with bar:
        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _record(cfg: EvalConfig, job: dict[str, Any], result: dict[str, Any]) -> None:
    video = result.get("video")
    if video:
        keep = cfg.videos != "failures" or not result["success"]
        final = Path(video).with_name(Path(video).stem + ("-success" if result["success"] else "-failure") + ".mp4")
        if keep and Path(video).is_file():
            Path(video).replace(final)
            result["video"] = str(final.relative_to(cfg.out))
        else:
            Path(video).unlink(missing_ok=True)
            result.pop("video", None)
            result.pop("video_frames", None)
    record = {"suite": job["suite"], "task": job["task"], "episode": job["episode"], **result,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _atomic_json(episode_path(cfg.out, job["suite"], job["task"], job["episode"]), record)


def _rate(successes: int, n: int) -> float | None:
    return round(successes / n, 4) if n else None


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("rocket-vla", "torch", "numpy", "websockets", "msgpack"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {**out, **(extra or {})}


def aggregate(cfg: EvalConfig) -> dict[str, Any]:
    """results.json from every episode record on disk (this run's and earlier ones)."""
    suites: dict[str, Any] = {}
    total_s = total_n = 0
    for sp in cfg.suites:
        tasks_out: list[dict[str, Any]] = []
        groups: dict[str, dict[str, Any]] = {}
        s_succ = s_n = 0
        for task in sp.tasks:
            folder = cfg.out / "episodes" / sp.suite / f"task-{task['index']:03d}"
            records = sorted((json.loads(p.read_text()) for p in folder.glob("ep-*.json")), key=lambda r: r["episode"])
            row: dict[str, Any] = {"index": task["index"], "name": task.get("name"),
                                   "instruction": task.get("instruction")}
            group = cfg.benchmark.group_of(task)
            if group is not None:
                row["group"] = group
            if task.get("skip"):
                row.update(status="skipped", reason=task["skip"], fetch=task.get("fetch"))
            else:
                succ = sum(r["success"] for r in records)
                row.update(status="done" if records else "not run", episodes=len(records), successes=succ,
                           success_rate=_rate(succ, len(records)),
                           mean_steps=round(sum(r["steps"] for r in records) / len(records), 1) if records else None,
                           videos=[r["video"] for r in records if r.get("video")])
                s_succ += succ
                s_n += len(records)
            if task.get("skip") or records:
                tasks_out.append(row)
            if group is not None:
                g = groups.setdefault(group, {"episodes": 0, "successes": 0, "tasks_run": 0, "tasks_skipped": 0,
                                              "skip_reasons": {}})
                if task.get("skip"):
                    g["tasks_skipped"] += 1
                    g["skip_reasons"].setdefault(task["skip"], task.get("fetch"))
                elif records:
                    g["tasks_run"] += 1
                    g["episodes"] += len(records)
                    g["successes"] += sum(r["success"] for r in records)
        for g in groups.values():
            g["success_rate"] = _rate(g["successes"], g["episodes"])
        suites[sp.suite] = {
            "protocol": sp.protocol.to_dict(),
            "preset": sp.preset.name,
            "deviations": {k: {**v, **({"reason": sp.reasons[k]} if k in sp.reasons else {})}
                           for k, v in sp.protocol.deviations(sp.preset).items()},
            "episodes": s_n, "successes": s_succ, "success_rate": _rate(s_succ, s_n),
            "tasks": tasks_out,
            **({"groups": groups} if groups else {}),
        }
        total_s += s_succ
        total_n += s_n
    return {
        "results_version": RESULTS_VERSION,
        "benchmark": cfg.benchmark.name,
        "policy": cfg.policy,
        "overall": {"episodes": total_n, "successes": total_s, "success_rate": _rate(total_s, total_n)},
        "suites": suites,
        "selection": {"tasks": list(cfg.tasks) if cfg.tasks is not None else "all",
                      "episodes": list(cfg.episodes) if cfg.episodes is not None else "all",
                      "workers": cfg.workers},
        "versions": versions(cfg.extra_versions),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
