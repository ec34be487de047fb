"""The `rocket align` trainer: accelerate (DDP/FSDP, mixed precision, trackers) around one align step.

One optimizer step = `grad_accum` global micro-batches. A global micro-batch is `batch_size x processes`
consecutive samples of the resumable sampler stream and each process takes its slice, so N processes
see exactly the samples one process would at the same global batch, and a resumed run continues the
stream where the checkpoint left it.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from torch.utils.data import DataLoader, Sampler

from rocket_core.align.targets import teacher_features
from rocket_core.contract_check import check_run
from rocket_core.contracts import Batch, TeacherModel
from rocket_core.conventions import FILENAME, from_dataset as conventions_from_dataset
from rocket_core.data import VLADataset, collate_batch, to_device
from rocket_core.data.dataset import TrainSampler
from rocket_core.data.spec import DataSpec
from rocket_core.engine import AlignPlan
from rocket_core.errors import RocketError
from rocket_core.progress import Bar
from rocket_core.testhook import pause_point
from rocket_core.train.build import AlignModule, apply_checkpoint, build_module, build_teacher
from rocket_core.train.cache import TeacherCache
from rocket_core.train.checkpoint import (
    CheckpointData,
    check_normalization,
    check_resume,
    clean_stale,
    latest_name,
    load_checkpoint,
    point_latest,
    save_checkpoint,
)
from rocket_core.train.manifest import mismatch
from rocket_core.train.optim import build_optimizer
from rocket_core.train.run import tracker


class ShardSampler(Sampler[list[tuple[int, int]]]):
    """This process's slice of every global micro-batch of the resumable `(index, epoch)` stream."""

    def __init__(self, num_samples: int, seed: int, batch_size: int, rank: int, world: int, start: int) -> None:
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.rank, self.world, self.start = rank, world, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        stream = iter(TrainSampler(self.num_samples, self.seed, self.start))
        while True:
            block = [next(stream) for _ in range(self.batch_size * self.world)]
            yield block[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C after checkpointing
    wall_s: float = 0.0
    steps_run: int = 0  # steps done by this call (a resumed run started later)


def data_spec_for(plan: AlignPlan) -> DataSpec:
    """The data spec with what the VLA dictates (chunk length, normalisation) filled in."""
    info, data = plan.vla_info, plan.spec.data
    update: dict[str, Any] = {"normalization": info.normalization}
    if info.chunk_size is not None:
        update["chunk_size"] = info.chunk_size
    return data.model_copy(update=update)


def _check_dataset(dataset: VLADataset, plan: AlignPlan) -> None:
    sample = dataset[0]
    info = plan.vla_info
    for key, want in (("actions", info.action_dim), ("state", info.state_dim)):
        got = sample[key].shape[-1]
        if want is not None and got != want:
            raise RocketError(
                f"the dataset's {key} have {got} dimensions but VLA '{plan.vla.name}' expects {want}; "
                f"pick the matching data.{'action' if key == 'actions' else 'state'}_key or VLA options"
            )


def _rng_state() -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def rewind_metrics(run_dir: Path, step: int) -> None:
    """Keep only `metrics.jsonl` records up to `step` (a resumed run redoes the rest; a kill may have left
    a partial last line), so no step is ever logged twice."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            break  # the torn last line of a killed run
    tmp = path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


class _Interrupt:
    """First Ctrl-C: finish the step, checkpoint, stop. Second: abort at once (KeyboardInterrupt)."""

    old: Any  # the SIGINT handler to restore: whatever signal.signal returned

    def __init__(self, announce: bool) -> None:
        self.requested, self.announce, self.old = False, announce, None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort at once)",
                  file=sys.stderr, flush=True)

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


class Trainer:
    """Builds everything from a resolved plan and runs (or resumes) the optimisation.

    `resume` (a checkpoint, or its folder) must come from the same run: `resume_conflicts` lists what
    differs. `checkpoint_minutes` adds wall-clock checkpoints to `save_every` (0: off). `files` are extra
    text files written into every checkpoint (e.g. `conventions.json`).
    """

    def __init__(self, plan: AlignPlan, run_dir: Path, resume: Path | CheckpointData | None = None,
                 progress: bool = True, checkpoint_minutes: float = 10.0, files: dict[str, str] | None = None) -> None:
        from accelerate import Accelerator

        self.plan, self.run_dir, self.progress = plan, Path(run_dir), progress
        self.checkpoint_minutes, self.files = checkpoint_minutes, dict(files or {})
        spec, t = plan.spec, plan.spec.training
        precision = t.mixed_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() else "no"
        fsdp = None
        if t.distributed == "fsdp":
            if not torch.cuda.is_available():
                raise RocketError("training.distributed 'fsdp' needs CUDA GPUs; use 'ddp' on CPU")
            from accelerate.utils import FullyShardedDataParallelPlugin

            fsdp = FullyShardedDataParallelPlugin(use_orig_params=True)  # LoRA: frozen and trained params mix
        self.acc = Accelerator(mixed_precision=precision, log_with=tracker(t.report_to),
                               project_dir=str(self.run_dir), cpu=not torch.cuda.is_available(),  # cpu: gloo DDP
                               fsdp_plugin=fsdp)
        ckpt = load_checkpoint(resume) if isinstance(resume, (str, Path)) else resume
        if ckpt is not None:
            check_resume(ckpt, plan.spec, self.acc.num_processes)
        self.coefficient = spec.alignment.coefficient
        module = build_module(plan)  # seeds first
        head = module.head
        self.teacher: TeacherModel | None = build_teacher(plan) if head is not None else None
        if self.teacher is not None:
            self.teacher.to(self.acc.device)  # type: ignore[attr-defined]  # an nn.Module; TeacherModel has no .to
        self.pool_rng = torch.Generator().manual_seed(t.seed)
        if head is not None:
            head.generator = self.pool_rng
        trainable = module.trainable()
        self.names, self.params = list(trainable), list(trainable.values())
        if not self.params:
            raise RocketError(f"nothing to train: VLA '{plan.vla.name}' marked no parameter as trainable")
        self.optimizer, self.scheduler = build_optimizer(self.params, t)
        self.step, self.resumed_from = 0, ckpt
        self.ema = {n: p.detach().clone() for n, p in zip(self.names, self.params)} if t.ema_decay else None
        if ckpt is not None:
            self._restore(module, ckpt)
        self.module = self.acc.prepare(module)

        self.dataset = VLADataset(data_spec_for(plan), seed=t.seed)
        _check_dataset(self.dataset, plan)
        self.normalization = {"state": self.dataset.state_norm.to_dict(), "action": self.dataset.action_norm.to_dict()}
        check_normalization(self.normalization, "the dataset's meta/stats.json")  # before training, not at the save
        conventions = conventions_from_dataset(self.dataset, self.dataset.spec)  # fails early, not at the save
        self.files = {FILENAME: conventions.to_json(), **self.files}
        per_step = t.batch_size * self.acc.num_processes * t.grad_accum
        sampler = ShardSampler(len(self.dataset), t.seed, t.batch_size, self.acc.process_index,
                               self.acc.num_processes, start=self.step * per_step)
        self.cache: TeacherCache | None = None
        if self.teacher is not None and t.teacher_cache is not None:
            self.cache = TeacherCache.for_run(plan, self.dataset, t.teacher_cache, t.teacher_cache_dtype,
                                              t.teacher_cache_on_augment)
        self.loader = DataLoader(self.dataset, batch_sampler=sampler,
                                 collate_fn=collate_batch if self.cache is None else self.cache.collate,
                                 num_workers=t.num_workers,
                                 pin_memory=self.cache is not None and torch.cuda.is_available())
        self.samples_per_step = per_step
        self.resume_rng = ckpt.rng if ckpt is not None else None  # restored in train(), see there

    def _restore(self, module: AlignModule, ckpt: CheckpointData) -> None:
        apply_checkpoint(module, ckpt)
        where = (ckpt.path or self.run_dir) / "optimizer.pt"
        try:
            self.optimizer.load_state_dict(ckpt.optimizer)
            self.scheduler.load_state_dict(ckpt.scheduler)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise RocketError(f"'{where}' does not fit this run's optimizer ({' '.join(str(exc).split())[:120]}); "
                              "resume from another checkpoint") from None
        for i, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                if value.ndim and value.shape != self.params[i].shape:
                    raise RocketError(f"'{where}' state.{i}.{key} has shape {list(value.shape)}, the parameter "
                                      f"{self.names[i]} has {list(self.params[i].shape)}")
        if self.ema is not None:
            if ckpt.ema is None:
                raise RocketError(f"checkpoint '{ckpt.path}' lacks ema.safetensors, which its spec's "
                                  "training.ema_decay needs; resume from another checkpoint")
            self.ema = {n: ckpt.ema[n].to(p.device, p.dtype).clone() for n, p in zip(self.names, self.params)}
        rng = {"cpu": torch.get_rng_state(), "pooling": self.pool_rng.get_state()}
        where = (ckpt.path or self.run_dir) / "rng.safetensors"
        mismatch(where, {k: list(v.shape) for k, v in rng.items()}, {k: list(v.shape) for k, v in ckpt.rng.items()},
                 exact=False)
        wrong = [k for k, v in ckpt.rng.items() if v.dtype != torch.uint8]
        if wrong:
            raise RocketError(f"'{where}' tensor '{wrong[0]}' is {ckpt.rng[wrong[0]].dtype}, an RNG state is uint8")
        self.pool_rng.set_state(ckpt.rng["pooling"])
        self.step = ckpt.step

    def _targets(self, batch: Batch) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        if self.cache is not None:
            return self.cache.targets(batch, self.teacher)
        layers = self.plan.layers.teacher
        feats = teacher_features(self.teacher, batch, layers, self.plan.vla_info.num_images)
        head = self.acc.unwrap_model(self.module).head  # Any: accelerate is untyped
        targets: torch.Tensor = head.pool_targets([feats[k] for k in layers])
        return targets

    def _check_finite(self, action: torch.Tensor, pairs: torch.Tensor | None) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(action) else 1.0], device=self.acc.device)
        if pairs is not None:
            bad = torch.cat([bad, (~torch.isfinite(pairs.detach())).float()])
        if float(self.acc.reduce(bad, "sum").sum()) == 0:
            return
        step = self.step + 1
        where = "the action loss" if not torch.isfinite(action) else "the alignment loss"
        if pairs is not None and torch.isfinite(action):
            i = int((~torch.isfinite(pairs.detach())).nonzero()[0])
            v, t = self.plan.layers.pairs[i]
            where += f" of pair {i} (VLA layer {v}, teacher layer {t})"
        name = latest_name(self.run_dir)
        kept = f"last good checkpoint: {name}" if name else "no checkpoint yet"
        raise RocketError(f"non-finite {where} at step {step}; stopped ({kept}); "
                          "lower the learning rate or check the data")

    def _save(self, history: list[dict[str, Any]]) -> Path | None:
        self.acc.wait_for_everyone()
        path = None
        if self.acc.is_main_process:
            module = self.acc.unwrap_model(self.module)
            named = dict(module.named_parameters())
            path = save_checkpoint(self.run_dir, CheckpointData(
                step=self.step,
                samples_seen=self.step * self.samples_per_step,
                trainable={n: named[n] for n in self.names},
                projector=module.head.projector.state_dict() if module.head is not None else None,
                ema=self.ema,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                rng={**_rng_state(), "pooling": self.pool_rng.get_state()},
                spec=self.plan.spec,
                extra={
                    "world_size": self.acc.num_processes,
                    "metrics": history[-1] if history else {},
                    # inference needs these to map actions back to robot units, without the dataset
                    "normalization": self.normalization,
                    "cameras": list(self.dataset.slots),
                    "plugins": self.plan.plugins,  # packages and versions: a load without them says what to install
                },
                files=self.files,
            ))
        self.acc.wait_for_everyone()
        return path

    def _start_files(self) -> None:
        """Run folder, stale temp files gone, spec written, metrics rewound to the step we start from."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        clean_stale(self.run_dir)
        (self.run_dir / "spec.yaml").write_text(yaml.safe_dump(self.plan.spec.model_dump(mode="json"),
                                                               sort_keys=False))
        rewind_metrics(self.run_dir, self.step)
        ckpt = self.resumed_from.path if self.resumed_from is not None else None
        if ckpt is not None and ckpt.parent.resolve() == (self.run_dir / "checkpoints").resolve():
            point_latest(self.run_dir, ckpt.name)  # resumed from an older step: it is the run's state again

    def _due(self, stop: bool, last_save: float) -> tuple[bool, bool]:
        """(checkpoint now, stop now), agreed by every process so they all save the same step."""
        t = self.plan.spec.training
        timed = self.checkpoint_minutes > 0 and time.monotonic() - last_save >= self.checkpoint_minutes * 60
        flags = torch.tensor([float(stop), float(timed)], device=self.acc.device)
        if self.acc.num_processes > 1:
            flags = self.acc.reduce(flags, "sum")
        stop, timed = bool(flags[0] > 0), bool(flags[1] > 0)
        every = bool(t.save_every) and self.step % t.save_every == 0
        return (stop or timed or every) and self.step < t.max_steps, stop

    def train(self) -> TrainResult:
        t = self.plan.spec.training
        start_step, started = self.step, time.monotonic()
        if self.step >= t.max_steps:  # a finished run: nothing to redo, nothing to rewrite
            return TrainResult(self.run_dir, self.resumed_from.path if self.resumed_from else None, self.step)
        created = not self.run_dir.exists()
        main = self.acc.is_main_process
        if t.distributed != "fsdp":  # sharded parameters cannot run outside FSDP's wrapper; info() was checked
            check_run(self.plan, self.acc.unwrap_model(self.module).vla, self.teacher if self.cache is None else None,
                      self.dataset, self.acc.device)
        history: list[dict[str, Any]] = []
        labels = [f"pair{i}_v{v}_t{tt}" for i, (v, tt) in enumerate(self.plan.layers.pairs)]
        checkpoint, interrupted = None, False
        data = iter(self.loader)  # draws the loader's base seed from the global RNG, so restore it after
        if self.resume_rng is not None:
            _set_rng_state(self.resume_rng)  # building, loading and the loader consumed random numbers
        try:
            if main:
                self._start_files()
            self.acc.init_trackers("rocket")
            with contextlib.ExitStack() as stack:
                log = stack.enter_context(open(self.run_dir / "metrics.jsonl", "a")) if main else None
                stop = stack.enter_context(_Interrupt(announce=main))
                bar = stack.enter_context(Bar("align", t.max_steps, self.progress and main, self.step))
                last_save, saved_at = time.monotonic(), -1
                while self.step < t.max_steps:
                    record = self._one_step(data, labels)
                    history.append(record)
                    if log is not None and (self.step % t.log_every == 0 or self.step == t.max_steps):
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    self.acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=self.step)
                    bar.update(completed=record["step"],
                               text=f"action {record['action_loss']:.4f}  align {record['align_loss']:.4f}")
                    pause_point("step", self.step)
                    save, halt = self._due(stop.requested, last_save)
                    if save:
                        checkpoint, saved_at, last_save = self._save(history), self.step, time.monotonic()
                    if halt:
                        interrupted = self.step < t.max_steps
                        break
                if saved_at != self.step:  # the same on every process, so all of them save
                    checkpoint = self._save(history)
        except BaseException:
            if created and main and self.step == start_step and self.run_dir.is_dir():
                shutil.rmtree(self.run_dir)  # failed before its first step: leave nothing behind
            raise
        self.acc.end_training()
        return TrainResult(self.run_dir, checkpoint, self.step, history, interrupted=interrupted,
                           wall_s=time.monotonic() - started, steps_run=self.step - start_step)

    def _one_step(self, data: Iterator[Batch], labels: list[str]) -> dict[str, Any]:
        t = self.plan.spec.training
        start = time.perf_counter()
        action_sum = torch.zeros((), device=self.acc.device)
        pair_sum = torch.zeros(len(labels), device=self.acc.device)
        for micro in range(t.grad_accum):
            batch = to_device(next(data), self.acc.device)
            targets = self._targets(batch)
            sync = contextlib.nullcontext() if micro == t.grad_accum - 1 else self.acc.no_sync(self.module)
            with sync:
                with self.acc.autocast():
                    action, pairs = self.module(batch, targets)
                    total = action if pairs is None else action + self.coefficient * pairs.mean()
                self._check_finite(action, pairs)
                self.acc.backward(total / t.grad_accum)
            action_sum += action.detach().float() / t.grad_accum
            if pairs is not None:
                pair_sum += pairs.detach().float() / t.grad_accum
        if t.clip_grad_norm:
            grad_norm = float(self.acc.clip_grad_norm_(self.params, t.clip_grad_norm))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in self.params if p.grad is not None])))
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None and t.ema_decay is not None:  # both or neither
            with torch.no_grad():
                for name, p in zip(self.names, self.params):
                    self.ema[name].lerp_(p.detach(), 1 - t.ema_decay)
        self.step += 1
        action_mean = float(self.acc.reduce(action_sum, "mean"))
        pairs_mean = self.acc.reduce(pair_sum, "mean").tolist()
        align = sum(pairs_mean) / len(pairs_mean) if self.teacher is not None else 0.0
        record: dict[str, Any] = {
            "step": self.step,
            "action_loss": action_mean,
            "align_loss": align,
            "total_loss": action_mean + self.coefficient * align,
            "grad_norm": grad_norm,
            "lr": lr,
            "samples_per_s": self.samples_per_step / (time.perf_counter() - start),
        }
        if self.teacher is not None:
            record.update({f"align/{label}": value for label, value in zip(labels, pairs_mean)})
        if self.cache is not None:
            record.update(self.cache.stats.as_record())
        return record
