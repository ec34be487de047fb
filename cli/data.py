"""`rocket data inspect`: what a LeRobot dataset holds and how rocket will read it (docs/data.md)."""
from __future__ import annotations

from typing import Optional

import typer

from rocket_cli.common import console, handle_errors

MAX_TASKS = 50  # longer task lists are cut, with the count of the rest


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="LeRobot datasets: inspect the format, features, statistics and key mapping.",
                        no_args_is_help=True)

    @group.command("inspect")
    @handle_errors
    def inspect(
        dataset: str = typer.Argument(..., help="Local dataset folder or Hub dataset repo id."),
        revision: Optional[str] = typer.Option(None, help="Hub revision to pin."),
        preset: Optional[str] = typer.Option(None, help="Key-mapping preset for a local copy of a known dataset."),
        state_key: Optional[str] = typer.Option(None, help="State feature (default: preset, else usual names)."),
        action_key: Optional[str] = typer.Option(None, help="Action feature (default: preset, else usual names)."),
        groups: str = typer.Option("auto", help="Statistics groups: auto (one per LIBERO suite when mixed) or none."),
        compute_stats: bool = typer.Option(False, "--compute-stats", help="Compute and cache missing statistics now."),
    ) -> None:
        """Print the format version, features, episodes, tasks, statistics and the key mapping training will use."""
        import numpy as np

        from rocket_core.data.keymap import default_cameras, episode_groups, resolve_keys
        from rocket_core.data.lerobot import LeRobotReader
        from rocket_core.data.lerobot_files import STAT_NAMES
        from rocket_core.data.spec import DataSpec
        from rocket_core.data.stats import cache_path, load_group_stats, stat_features
        from rocket_core.errors import RocketError

        spec = DataSpec(dataset=dataset, revision=revision, preset=preset, state_key=state_key,
                        action_key=action_key, groups=groups)
        reader = LeRobotReader(dataset, revision)
        keys = resolve_keys(reader, spec)
        shipped_stats = reader.stats  # checks their lengths against info.json
        for camera in reader.camera_keys:  # decodes one frame: its size must be the declared one
            reader.frames(camera, np.array([0]))
        out = console.print
        out(f"dataset    {reader.root}", highlight=False, soft_wrap=True)
        out(f"format     LeRobot {reader.version}", highlight=False)
        out(f"fps        {reader.fps:g}", highlight=False)
        out(f"frames     {len(reader)} in {reader.num_episodes} episodes", highlight=False)
        out("features", highlight=False)
        for key, feature in reader.features.items():
            kind = "camera" if key in reader.camera_keys else ""
            out(f"  {key:<28} {feature['dtype']:<8} {feature['shape']} {kind}".rstrip(), highlight=False, soft_wrap=True)
        counts: dict[int, int] = {}
        for e in range(reader.num_episodes):
            index = int(reader.column("task_index")[reader.episode_bounds(e)[0]])
            counts[index] = counts.get(index, 0) + 1
        out(f"tasks      {len(reader.tasks)}", highlight=False)
        for index, task in enumerate(reader.tasks[:MAX_TASKS]):
            n = counts.get(index, 0)
            out(f"  {index:>4}  {task}  ({n} episode{'' if n == 1 else 's'})", highlight=False, soft_wrap=True)
        if len(reader.tasks) > MAX_TASKS:
            out(f"  ... {len(reader.tasks) - MAX_TASKS} more", highlight=False)

        source = {"v2.1": "meta/episodes_stats.jsonl (aggregated)"}.get(reader.version, "meta/stats.json")
        out(f"statistics {source if shipped_stats else 'none shipped'}", highlight=False)
        for key in stat_features(reader):
            names = [n for n in STAT_NAMES if n in reader.stats.get(key, {})]
            missing = [n for n in STAT_NAMES if n not in names]
            out(f"  {key:<28} {', '.join(names) or '-'}" + (f"  (missing {', '.join(missing)})" if missing else ""),
                highlight=False, soft_wrap=True)
        episode_group = episode_groups([reader.episode_task(e) for e in range(reader.num_episodes)], spec.groups)
        sizes = {g: episode_group.count(g) for g in dict.fromkeys(episode_group)}
        out("groups     " + ", ".join(f"{g} ({n} episodes)" for g, n in sizes.items()), highlight=False, soft_wrap=True)
        if compute_stats:
            _, where = load_group_stats(reader, episode_group)
            out(f"  statistics per group: {where}", highlight=False, soft_wrap=True)
        else:
            shipped = set(sizes) == {"all"} and all(
                set(STAT_NAMES) <= set(reader.stats.get(k, {})) for k in stat_features(reader))
            path = cache_path(reader, episode_group, stat_features(reader))
            where = ("the shipped ones" if shipped else f"cached at {path}" if path.is_file()
                     else f"computed on first use (or with --compute-stats), cached at {path}")
            out(f"  statistics per group: {where}", highlight=False, soft_wrap=True)

        out(f"key map    preset {keys.preset or 'none'}", highlight=False)
        out(f"  state    {keys.state}  ({keys.origin['state']})", highlight=False)
        out(f"  action   {keys.action}  ({keys.origin['action']})", highlight=False)
        cameras = keys.cameras or default_cameras(reader.camera_keys)
        mapped = ", ".join(f"{slot} <- {camera or '(empty)'}" for slot, camera in cameras.items())
        out(f"  cameras  {mapped}  ({keys.origin['cameras']})", highlight=False, soft_wrap=True)
        if keys.gripper:
            out(f"  gripper  {keys.gripper}", highlight=False)
        try:
            reader.check_finite([keys.state, keys.action])
            out("  values   finite", highlight=False)
        except RocketError as exc:
            out(f"  values   NOT finite: {exc}", highlight=False, soft_wrap=True)

    app.add_typer(group, name="data")
