"""`rocket eval`: run a benchmark against a policy (a `rocket serve` URL, a checkpoint or a preset)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from rocket_cli.common import console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.paths import check_output_dir


def parse_indices(text: str | None, what: str) -> list[int] | None:
    """'0,2,5-7' -> [0, 2, 5, 6, 7]; None stays None."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise RocketError(f"--{what} takes indices like 0,2,5-7, got '{text}'") from None
    if not out or min(out) < 0:
        raise RocketError(f"--{what} takes non-negative indices like 0,2,5-7, got '{text}'")
    return sorted(set(out))


def print_results(results: dict[str, Any]) -> None:
    table = Table(title=f"{results['benchmark']} results")
    for col in ("suite", "group", "tasks run", "skipped", "episodes", "success"):
        table.add_column(col, justify="right" if col not in ("suite", "group") else "left")
    for suite, s in results["suites"].items():
        run = sum(1 for t in s["tasks"] if t.get("status") == "done")
        skipped = sum(1 for t in s["tasks"] if t.get("status") == "skipped")
        rate = "-" if s["success_rate"] is None else f"{100 * s['success_rate']:.1f} %"
        table.add_row(suite, "all", str(run), str(skipped), str(s["episodes"]), rate)
        for name, g in (s.get("groups") or {}).items():
            grate = "skipped" if g["success_rate"] is None else f"{100 * g['success_rate']:.1f} %"
            table.add_row("", name, str(g["tasks_run"]), str(g["tasks_skipped"]), str(g["episodes"]), grate)
    console.print(table)
    for suite, s in results["suites"].items():
        p = s["protocol"]
        console.print(f"[bold]{suite}[/] protocol {s['preset']}: {p['trials_per_task']} trials/task, seed {p['seed']}, "
                      f"max {p['max_steps']} steps after {p['wait_steps']} wait steps, {p['render_size']} px, "
                      f"{p['open_loop_steps']} actions open-loop, gripper {p['gripper']}", highlight=False)
        for name, dev in s["deviations"].items():
            console.print(f"  deviation {name}: preset {json.dumps(dev['preset'])} -> {json.dumps(dev['used'])}"
                          + (f" ({dev['reason']})" if dev.get("reason") else ""), highlight=False)
        for g in (s.get("groups") or {}).values():
            for reason, fetch in g["skip_reasons"].items():
                console.print(f"  skipped: {reason}" + (f" (fetch: {fetch})" if fetch else ""), highlight=False)
    o = results["overall"]
    if o["success_rate"] is not None:
        console.print(f"overall: {o['successes']}/{o['episodes']} = {100 * o['success_rate']:.1f} %")


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @handle_errors
    def eval_cmd(
        benchmark: str = typer.Option(None, help="libero_spatial|object|goal|10|90, libero, libero_plus, robotwin, blocks, toy."),
        suite: str = typer.Option(None, help="Suites, comma-separated (default: the one in --benchmark, else all)."),
        policy: str = typer.Option(None, help="ws://HOST:PORT of `rocket serve`, a checkpoint/run folder, "
                                   "replay:DIR (play back a --record dataset's actions), expert (the benchmark's "
                                   "scripted expert) or random (uniform random actions)."),
        record: Path = typer.Option(None, help="Write the rollouts as a LeRobot v3 dataset here "
                                    "(physical-intelligence/libero keys)."),
        vla: str = typer.Option(None, help="Serve this VLA plugin's --preset in-process instead (smoke tests)."),
        preset: str = typer.Option("tiny", help="Preset with --vla."),
        setup: str = typer.Option(None, help="Create/refresh the isolated environment of a benchmark and exit."),
        force: bool = typer.Option(False, help="With --setup: rebuild from scratch."),
        assets: bool = typer.Option(False, help="With --setup: also fetch Hub-only assets (RoboTwin, LIBERO-Plus)."),
        yes: bool = typer.Option(False, "--yes", "-y", help="With --setup: install the system packages it needs "
                                 "(apt-get/dnf) without asking; otherwise the command is printed."),
        protocol: str = typer.Option(None, help="Protocol family: openvla-oft or openpi (default: the VLA's eval_family)."),
        unnorm_key: str = typer.Option(None, help="The checkpoint's normalisation group to use (default: the suite's)."),
        trials: int = typer.Option(None, help="Trials per task (deviation from the preset)."),
        max_steps: int = typer.Option(None, help="Policy steps per episode (deviation)."),
        seed: int = typer.Option(None, help="Seed (deviation)."),
        open_loop_steps: int = typer.Option(None, help="Actions executed per query (deviation)."),
        tasks: str = typer.Option(None, help="Task indices to run, e.g. 0,3-5 (default all)."),
        episodes: str = typer.Option(None, help="Episode indices per task, e.g. 0-9 (default all trials)."),
        workers: int = typer.Option(1, min=1, help="Parallel simulator processes."),
        videos: str = typer.Option("first", help="MP4 videos: none, first (episode 0 of each task), failures, all."),
        output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Results folder (resumable)."),
        progress: bool = typer.Option(True, help="Progress bar."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
        token: str = typer.Option(None, envvar="ROCKET_SERVE_TOKEN", show_default=False,
                                  help="The policy server's token (rocket serve --token)."),
    ) -> None:
        """Evaluate a policy on a benchmark with the protocol pinned; resumable, parallel, with videos."""
        from rocket_core.eval.base import find_benchmark
        from rocket_core.eval.envs import system_installs

        if setup is not None:
            bench, _ = find_benchmark(setup)
            t0 = time.perf_counter()
            with system_installs(yes):
                info = bench.setup(log=lambda m: console.print(m, highlight=False), force=force, assets=assets)
            console.print(f"{bench.name} set up in {time.perf_counter() - t0:.0f} s: {info.get('environment')}",
                          highlight=False)
            return
        if benchmark is None:
            raise RocketError("choose a benchmark with --benchmark (e.g. libero_spatial), or --setup BENCHMARK")
        if videos not in ("none", "first", "failures", "all"):
            raise RocketError("--videos takes none, first, failures or all")
        for flag, value in (("trials", trials), ("max-steps", max_steps), ("open-loop-steps", open_loop_steps)):
            if value is not None and value < 1:
                raise RocketError(f"--{flag} must be at least 1, got {value}")
        if seed is not None and not 0 <= seed < 2**32:
            raise RocketError(f"--seed must lie in 0 .. 2^32-1, got {seed}")
        if output_dir is not None:
            check_output_dir(output_dir, "--output-dir")
        bench, named_suite = find_benchmark(benchmark)
        suites = [s.strip() for s in suite.split(",")] if suite else ([named_suite] if named_suite else list(bench.suites))
        for s in suites:
            bench.check_suite(s)
        task_sel, ep_sel = parse_indices(tasks, "tasks"), parse_indices(episodes, "episodes")
        bench.python()  # fails early with the --setup hint
        if policy == "expert" and not bench.expert:
            raise RocketError(f"benchmark '{bench.name}' has no scripted expert; --policy expert needs one "
                              "(e.g. --benchmark blocks)")
        server = None
        if token:  # the simulator workers inherit it
            os.environ["ROCKET_SERVE_TOKEN"] = token
        try:
            url, server = _policy_url(policy, vla, preset, threads)
            _evaluate(bench, suites, url, protocol, trials, max_steps, seed, open_loop_steps, task_sel, ep_sel,
                      workers, videos, output_dir, progress, unnorm_key, record)
        finally:
            if server is not None:
                server.stop()


def _policy_url(policy: str | None, vla: str | None, preset: str, threads: int | None = None) -> tuple[str, Any]:
    from rocket_core.eval.worker import LOCAL_POLICIES
    from rocket_core.hub import resolve_policy
    from rocket_core.threads import configure_threads

    if policy in LOCAL_POLICIES:  # runs inside the simulator workers: no server
        if vla:
            raise RocketError("give either --policy or --vla, not both")
        return policy, None
    source = resolve_policy(policy) if policy else None  # a URL, replay:DIR, or a local folder (Hub ids fetched)
    if isinstance(source, str) and source.startswith(("ws://", "wss://")):
        if vla:
            raise RocketError("give either --policy or --vla, not both")
        if threads is not None:
            configure_threads(threads)
        return source, None
    from rocket_cli.serve import load_policy
    from rocket_core.eval.server import PolicyServer

    if policy and policy.startswith("replay:"):
        from rocket_core.eval.record import ReplayPolicy

        server = PolicyServer(ReplayPolicy(Path(policy[len("replay:"):])), port=0).start()
        console.print(f"replaying {policy[len('replay:'):]} in-process on {server.url}", highlight=False)
        return server.url, server
    if policy is None and vla is None:
        raise RocketError("no policy: give --policy ws://HOST:PORT (rocket serve), --policy CHECKPOINT_DIR, "
                          "or --vla NAME --preset tiny")
    loaded = load_policy(Path(source) if source else None, vla, preset, None)
    console.print(f"[dim]{configure_threads(threads, loaded.model)}[/]")
    server = PolicyServer(loaded, port=0).start()
    console.print(f"serving {loaded.vla_name} in-process on {server.url}", highlight=False)
    return server.url, server


def _evaluate(bench: Any, suites: list[str], url: str, family: str | None, trials: int | None,
              max_steps: int | None, seed: int | None, open_loop: int | None, tasks: list[int] | None,
              episodes: list[int] | None, workers: int, videos: str, output_dir: Path | None,
              progress: bool, unnorm_key: str | None = None, record: Path | None = None) -> None:
    from rocket_core.eval.client import PolicyClient
    from rocket_core.eval.protocol import apply_conventions
    from rocket_core.eval.runner import EvalConfig, SuitePlan, list_tasks, run_eval
    from rocket_core.eval.worker import LOCAL_POLICIES, local_metadata

    if url in LOCAL_POLICIES:
        meta = local_metadata(url)
    else:
        with PolicyClient(url) as client:  # fails at once, in one line, when nothing answers there
            meta = client.metadata
    family = family or meta.get("eval_family") or next(iter(bench.families), "")
    plans = []
    for s in suites:
        try:
            preset = bench.protocol(s, family)
            proto, reasons = apply_conventions(preset, meta.get("conventions"), unnorm_key, bench.checkpoint_conventions)
        except KeyError as exc:
            raise RocketError(str(exc.args[0])) from None
        changes = {k: v for k, v in (("trials_per_task", trials), ("max_steps", max_steps), ("seed", seed),
                                     ("open_loop_steps", open_loop)) if v is not None}
        reasons.update({k: "command-line option" for k in changes if changes[k] != getattr(preset, k)})
        proto = proto.replace(**changes)
        if meta.get("num_images") and meta["num_images"] < len(proto.cameras):
            proto = proto.replace(cameras=proto.cameras[: meta["num_images"]])
            reasons["cameras"] = f"the policy takes {meta['num_images']} camera(s)"
        plans.append(SuitePlan(s, proto, preset, list_tasks(bench, s, proto), reasons))
    out = output_dir or Path("eval") / f"{bench.name}-{meta.get('vla', 'policy')}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = EvalConfig(benchmark=bench, suites=plans, url=url, out=out, workers=workers, tasks=tasks,
                     episodes=episodes, videos=videos, policy={**meta, "url": url}, record=record)
    env = bench.env()
    if env is not None and env.info():
        cfg.extra_versions = {f"{bench.name}:{k}": v for k, v in (env.info() or {}).get("versions", {}).items()}
    results = run_eval(cfg, progress=progress, log=lambda m: console.print(m, highlight=False))
    print_results(results)
    console.print(f"results: {out / 'results.json'}", highlight=False)
