"""`rocket profile`: the paper's three analyses as functions that return JSON-ready results.

- `profile_cka`: linear CKA between every VLA hidden-state index and every teacher layer (teacher tokens
  bilinearly pooled to the VLA's vision-token count, PE off), Hungarian one-to-one matching, best teacher
  layer per VLA row. Exact when the features fit a memory budget, a streamed CountSketch otherwise
  (rocket_core.analysis.sketch).
- `profile_grad_conflict`: per pair, the gradient of its alignment loss on monitored trainable parameters
  (default: LoRA matrices of LLM block 0); the L x L cosine matrix averaged over batches.
- `profile_projector_similarity`: L x L token-mean cosine matrices of the projector's inputs, outputs
  (ensemble mean) and the pooled targets, and the per-pair output-target cosine.

Layer indices are ours throughout (the VLA's hidden-state indices, the teacher's layer indices); the
reference similarity script's -1 offset is not copied. Every analysis reads unaugmented samples
(`VLADataset(train=False)`), chosen by a seeded draw, in the same order for every model.

A result is a dict with `kind`, `format`, `matrices` (name -> {rows, cols, row_label, col_label, values})
and `primary` (the matrix `rocket profile compare` shows), plus kind-specific fields.
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from rocket_core.align.pooling import bilinear_pool
from rocket_core.align.targets import teacher_features
from rocket_core.analysis import plots
from rocket_core.analysis.similarity import gradient_conflict, token_mean_cosine
from rocket_core.analysis.sketch import Method, StreamedCKA
from rocket_core.contracts import Batch, TeacherAdapter, TeacherModel, VLAAdapter, VLAModel
from rocket_core.data import VLADataset, collate_batch, to_device
from rocket_core.engine import AlignPlan, plan_run
from rocket_core.errors import RocketError
from rocket_core.registry import Registry
from rocket_core.select.cka import hungarian_match
from rocket_core.select.layermap import write_layer_map
from rocket_core.specs import LayerMap, ProjectorSpec, RunSpec
from rocket_core.train.checkpoint import CheckpointData, find_checkpoint, load_checkpoint
from rocket_core.train.trainer import AlignModule, data_spec_for

FORMAT = 1
Progress = Callable[[int], None]
# colour range and map per kind: CKA lies in [0, 1], gradient cosines in [-1, 1]
KIND_STYLE: dict[str, tuple[tuple[float, float] | None, str]] = {
    "cka": ((0.0, 1.0), "viridis"),
    "grad-conflict": ((-1.0, 1.0), "RdBu_r"),
    "projector-similarity": (None, "viridis"),
}
FILE_STEMS = {"cka": "cka", "grad-conflict": "grad_conflict", "projector-similarity": "projector_similarity"}


# ---- models, data, samples ------------------------------------------------------------------------

def resolve_device(device: str | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RocketError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RocketError(f"device '{device}' asked for but CUDA is not available; use --device cpu")
    return dev


def with_data(spec: RunSpec, dataset: str | None) -> RunSpec:
    """`spec` reading `dataset` (local folder or Hub id) instead of its own; None keeps it."""
    if dataset is None:
        return spec
    return spec.model_copy(update={"data": spec.data.model_copy(update={"dataset": dataset})})


def feature_plan(spec: RunSpec, registry: Registry | None = None) -> AlignPlan:
    """A plan for feature extraction only: one harmless pair (0, 0) and the spec's projector with its
    default settings, so any spec resolves, whatever layer map or projector settings it carries (CKA ignores both)."""
    return plan_run(spec.model_copy(update={"layers": LayerMap(vla=[0], teacher=[0]),
                                            "projector": ProjectorSpec(name=spec.projector.name)}),
                    registry)


def build_align_module(plan: AlignPlan, trainable: Mapping[str, torch.Tensor] | None = None) -> AlignModule:
    """The `AlignModule` exactly as `rocket align` builds it, optionally loaded with trained weights.

    Seeding with the run's seed first reproduces the run's random-init weights (tiny presets, fresh LoRA);
    pretrained frozen weights come from `spec.vla.checkpoint`. `trainable` must name exactly the
    parameters that train (checkpoint `trainable.safetensors`).
    """
    from accelerate.utils import set_seed

    spec = plan.spec
    set_seed(spec.training.seed)
    vla = plan.vla.build(spec.vla)
    vla.configure_training(spec.training)
    head = plan.build_head() if spec.alignment.coefficient > 0 else None
    module = AlignModule(vla, head, plan.layers.vla)
    if trainable is not None:
        params = dict(module.named_parameters())
        wanted = [n for n, p in params.items() if p.requires_grad]
        missing = [n for n in wanted if n not in trainable]
        unexpected = [n for n in trainable if n not in params or not params[n].requires_grad]
        if missing or unexpected:
            detail = f"no weights for {missing[:3]}" if missing else f"unknown weights {unexpected[:3]}"
            raise RocketError(f"the checkpoint does not match the model its spec builds ({detail}); "
                              "was it written by another version of the plugin?")
        with torch.no_grad():
            for name in wanted:
                src = trainable[name]
                if src.shape != params[name].shape:
                    raise RocketError(f"checkpoint weight {name} has shape {tuple(src.shape)}, "
                                      f"the model expects {tuple(params[name].shape)}")
                params[name].copy_(src)
    return module


def build_models(plan: AlignPlan, trainable: Mapping[str, torch.Tensor] | None = None
                 ) -> tuple[AlignModule, TeacherModel]:
    """`build_align_module`, then the teacher, in `rocket align`'s order: with the same seed, tiny presets
    get exactly the VLA, head and teacher weights the run started from."""
    module = build_align_module(plan, trainable)
    return module, plan.teacher.build(plan.spec.teacher)


@dataclass
class TrainedRun:
    """A run rebuilt from a checkpoint: its resolved plan, the loaded `AlignModule`, its teacher."""

    plan: AlignPlan
    module: AlignModule
    teacher: TeacherModel
    checkpoint: CheckpointData
    path: Path


def load_trained(path: str | Path, dataset: str | None = None, registry: Registry | None = None) -> TrainedRun:
    """Rebuild a trained `AlignModule` (and its teacher) from a run folder or checkpoint folder.

    `plan_run(ckpt.spec)`, then `build_models` with the checkpoint's trainable weights. `dataset`
    replaces the spec's dataset (analysis on other data).
    """
    folder = find_checkpoint(Path(path))
    ckpt = load_checkpoint(folder)
    plan = plan_run(with_data(ckpt.spec, dataset), registry)
    module, teacher = build_models(plan, ckpt.trainable)
    return TrainedRun(plan, module, teacher, ckpt, folder)


def analysis_dataset(plan: AlignPlan) -> VLADataset:
    """Unaugmented samples, formed as the run's VLA needs them (chunk length, normalisation)."""
    return VLADataset(data_spec_for(plan), seed=plan.spec.training.seed, train=False)


def sample_indices(total: int, count: int, seed: int) -> list[int]:
    """`count` distinct dataset indices drawn with `seed`, ascending (all of them if count >= total)."""
    if count < 1:
        raise RocketError("--samples must be at least 1")
    if count >= total:
        return list(range(total))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=count, replace=False))


def iter_batches(dataset: VLADataset, indices: Sequence[int], batch_size: int,
                 device: torch.device) -> Iterator[Batch]:
    if batch_size < 1:
        raise RocketError("--batch-size must be at least 1")
    for start in range(0, len(indices), batch_size):
        yield to_device(collate_batch([dataset[i] for i in indices[start : start + batch_size]]), device)


def _autocast(device: torch.device, spec: RunSpec) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on GPU unless the run is float32 (as the trainer); nothing on CPU."""
    if device.type == "cuda" and spec.training.mixed_precision != "no":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- result documents -----------------------------------------------------------------------------

def matrix_doc(values: np.ndarray | torch.Tensor, rows: Sequence[Any], cols: Sequence[Any], row_label: str,
               col_label: str) -> dict[str, Any]:
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return {"rows": list(rows), "cols": list(cols), "row_label": row_label, "col_label": col_label,
            "values": [[float(v) for v in row] for row in arr]}


def pair_labels(layers: LayerMap) -> list[str]:
    return [f"v{v}-t{t}" for v, t in layers.pairs]


def _model_doc(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "preset": spec.preset, "checkpoint": spec.checkpoint, "revision": spec.revision}


def write_json(path: str | Path, doc: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(p)
    return p


def read_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise RocketError(f"profile result '{p}' does not exist; check the path") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RocketError(f"profile result '{p}' is not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") not in KIND_STYLE or "matrices" not in doc:
        raise RocketError(f"'{p}' is not a `rocket profile` result (no kind/matrices); "
                          "pass the JSON a profile command wrote")
    return doc


# ---- 1. CKA ---------------------------------------------------------------------------------------

_INT = re.compile(r"^-?\d+$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")


def _parse_side(text: str, top: int, resolve: Callable[[int], int], what: str) -> list[int]:
    text = text.strip()
    if text in ("", "all"):
        return list(range(top + 1))
    out: set[int] = set()
    for token in (t.strip() for t in text.split(",")):
        if _INT.match(token):
            out.add(resolve(int(token)))
        elif m := _RANGE.match(token):
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise RocketError(f"{what} layer range '{token}' is empty; write low-high")
            out.update(resolve(i) for i in range(lo, hi + 1))
        else:
            raise RocketError(f"cannot read {what} layers '{token}': use 'all', N, N-M or a comma list")
    return sorted(out)


def parse_cka_layers(value: str, vla: type[VLAAdapter], vinfo: Any, teacher: type[TeacherAdapter],
                     tinfo: Any) -> tuple[list[int], list[int]]:
    """`all` (every VLA hidden-state index x every teacher layer) or `VLA:TEACHER`, each side `all` or a
    comma list of indices and inclusive ranges (`0-4,8`)."""
    vla_text, _, teacher_text = value.partition(":") if ":" in value else (value, ":", value)
    if ":" not in value and value.strip() != "all":
        raise RocketError(f"--layers '{value}': use 'all' or 'VLA:TEACHER' (e.g. '0-32:all', '2,4,6:0-23')")
    return (
        _parse_side(vla_text, vinfo.max_layer_index, lambda i: vla.resolve_layer(vinfo, i), "VLA"),
        _parse_side(teacher_text, tinfo.num_layers - 1, lambda i: teacher.resolve_layer(tinfo, i), "teacher"),
    )


def profile_cka(
    plan: AlignPlan,
    vla: VLAModel,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    vla_layers: Sequence[int],
    teacher_layers: Sequence[int],
    batch_size: int = 8,
    method: Method = "auto",
    sketch_dim: int = 8192,
    memory_budget: float = 4e9,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CKA of every (VLA hidden state, teacher layer) on the same samples; see the module docstring."""
    device = torch.device(device)
    vinfo, tinfo = plan.vla_info, plan.teacher_info
    vla_layers, teacher_layers = sorted(vla_layers), sorted(teacher_layers)
    acc = StreamedCKA(len(indices), method, sketch_dim, memory_budget, seed)
    shapes: dict[str, list[int]] = {}
    vla.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        for batch in iter_batches(dataset, indices, batch_size, device):
            with _autocast(device, plan.spec):
                states = vla.forward_align(batch, vla_layers).vision_states
                raw = teacher_features(teacher, batch, teacher_layers, vinfo.num_images)
            feats: dict[tuple[str, int], torch.Tensor] = {("vla", k): states[k] for k in vla_layers}
            for k in teacher_layers:
                feats[("teacher", k)] = bilinear_pool(raw[k].float(), tinfo.patch_grid, vinfo.num_vision_tokens,
                                                      tinfo.image_size, add_pe=False)
            if not shapes:
                shapes = {"vla": list(feats[("vla", vla_layers[0])].shape[1:]),
                          "teacher": list(feats[("teacher", teacher_layers[0])].shape[1:])}
            acc.add(feats)
            if progress is not None:
                progress(len(batch["task"]))
    grams = acc.finish()
    rows = [("vla", k) for k in vla_layers]
    cols = [("teacher", k) for k in teacher_layers]
    cross = grams.cka(rows, cols)
    match = hungarian_match(cross, vla_layers, teacher_layers)
    return {
        "kind": "cka",
        "format": FORMAT,
        **(source or {}),
        "method": grams.method,
        "sketch": {"type": "countsketch", "dim": grams.sketch_dim, "seed": seed} if grams.method == "sketch" else None,
        "memory_budget_bytes": memory_budget,
        "exact_bytes": StreamedCKA.exact_bytes(len(indices), grams.features),
        "samples": len(indices),
        "sample_seed": seed,
        "sample_indices": list(indices),
        "data": plan.spec.data.dataset or "bundled",
        "vla": {**_model_doc(plan.spec.vla), "layers": vla_layers, "tokens_x_width": shapes["vla"],
                "num_vision_tokens": vinfo.num_vision_tokens},
        "teacher": {**_model_doc(plan.spec.teacher), "layers": teacher_layers, "pooled_tokens_x_width": shapes["teacher"],
                    "pooling": "bilinear", "teacher_pe": False},
        "primary": "cka",
        "matrices": {
            "cka": matrix_doc(cross, vla_layers, teacher_layers, "VLA hidden state", "teacher layer"),
            "vla_vla": matrix_doc(grams.cka(rows, rows), vla_layers, vla_layers, "VLA hidden state",
                                  "VLA hidden state"),
            "teacher_teacher": matrix_doc(grams.cka(cols, cols), teacher_layers, teacher_layers, "teacher layer",
                                          "teacher layer"),
        },
        "matching": {
            "pairs": [{"vla": v, "teacher": t, "cka": s} for v, t, s in match.pairs],
            "average_cka": match.average_similarity,
            "best_teacher_per_vla": {str(v): t for v, t in match.best_column_per_row.items()},
        },
    }


def cka_layer_map(doc: dict[str, Any]) -> LayerMap:
    """The Hungarian pairs as a layer map (VLA layers ascending), for `rocket align --layers FILE`."""
    pairs = sorted((p["vla"], p["teacher"]) for p in doc["matching"]["pairs"])
    return LayerMap(vla=[v for v, _ in pairs], teacher=[t for _, t in pairs])


def save_cka(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write cka.json, cka.png (matched pairs outlined, best teacher per row dotted) and layers.yaml."""
    out = Path(out_dir)
    layer_map = write_layer_map(out / "layers.yaml", cka_layer_map(doc), meta={
        "source": "rocket profile cka",
        "vla": doc["vla"]["name"],
        "teacher": doc["teacher"]["name"],
        "cka": [round(p["cka"], 6) for p in sorted(doc["matching"]["pairs"], key=lambda p: p["vla"])],
        "average_cka": round(doc["matching"]["average_cka"], 6),
        "samples": doc["samples"],
        "method": doc["method"],
    })
    pairs = [(p["vla"], p["teacher"]) for p in doc["matching"]["pairs"]]
    best = [(int(v), t) for v, t in doc["matching"]["best_teacher_per_vla"].items()]
    method = doc["method"] + (f" (CountSketch d={doc['sketch']['dim']})" if doc["sketch"] else "")
    figure = plots.heatmap(
        out / "cka.png", doc["matrices"]["cka"],
        f"linear CKA: {doc['vla']['name']} vs {doc['teacher']['name']} ({doc['samples']} samples, {method})",
        *KIND_STYLE["cka"], pairs=pairs, best=best,
        note=f"squares: one-to-one matching (mean {doc['matching']['average_cka']:.3f}); dots: best teacher layer per row",
    )
    doc = {**doc, "files": {"figure": str(figure), "layer_map": str(layer_map)}}
    return {"json": write_json(out / "cka.json", doc), "figure": figure, "layer_map": layer_map}


# ---- 2. gradient conflict -------------------------------------------------------------------------

def monitored_parameters(module: AlignModule, patterns: Sequence[str], lora_only: bool = True
                         ) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters whose name contains any of `patterns` (and `lora_` when `lora_only`)."""
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    chosen = [(n, p) for n, p in trainable
              if any(s in n for s in patterns) and (not lora_only or "lora_" in n)]
    if not chosen:
        sample = ", ".join(n for n, _ in trainable[:4])
        what = "LoRA parameter" if lora_only else "trainable parameter"
        raise RocketError(f"no {what} name contains any of {list(patterns)}; pick --params from the trainable "
                          f"names (e.g. {sample})" + ("; --all-params also takes non-LoRA ones" if lora_only else ""))
    return chosen


def profile_grad_conflict(
    plan: AlignPlan,
    module: AlignModule,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    patterns: Sequence[str] = ("layers.0.",),
    lora_only: bool = True,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cosine between the pairs' alignment-loss gradients on the monitored parameters, averaged over batches.

    Each pair's loss is averaged over the ensemble and the batch (`AlignOutput.pair_losses`); each gradient
    is divided by (norm + 1e-8). The action loss is not included (reference `profiling_gradient_filtering`).
    Works for every projector strategy. A pair whose gradient on the monitored parameters is zero (e.g. a
    VLA layer below them) gets a zero row and diagonal.
    """
    device = torch.device(device)
    if module.head is None:
        raise RocketError("this run has no alignment head (coefficient 0): there are no pair losses to compare")
    batch_size = batch_size or plan.spec.training.batch_size
    module.to(device).eval()
    chosen = monitored_parameters(module, patterns, lora_only)
    names, params = [n for n, _ in chosen], [p for _, p in chosen]
    keep = {id(p) for p in params}
    saved = {n: p.requires_grad for n, p in module.named_parameters()}
    for p in module.parameters():
        p.requires_grad_(id(p) in keep)  # the graph only needs paths to the monitored parameters
    layers = plan.layers
    num_pairs = len(layers.vla)
    cos_sum = torch.zeros(num_pairs, num_pairs, dtype=torch.float64)
    norm_sum = torch.zeros(num_pairs, dtype=torch.float64)
    batches = 0
    try:
        for batch in iter_batches(dataset, indices, batch_size, device):
            with torch.no_grad():
                raw = teacher_features(teacher, batch, layers.teacher, plan.vla_info.num_images)
                targets = module.head.pool_targets([raw[k] for k in layers.teacher])
            with _autocast(device, plan.spec):
                _, pair_losses = module(batch, targets)
            if not pair_losses.requires_grad:
                raise RocketError(f"no pair's alignment loss depends on the monitored parameters {list(patterns)} "
                                  "(are they below every aligned layer?); choose other --params")
            rows = []
            for i in range(num_pairs):
                grads = torch.autograd.grad(pair_losses[i], params, retain_graph=i < num_pairs - 1, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                       for g, p in zip(grads, params)]))
            flat = torch.stack(rows)
            cos_sum += gradient_conflict(flat).double().cpu()
            norm_sum += flat.norm(dim=1).double().cpu()
            batches += 1
            if progress is not None:
                progress(len(batch["task"]))
    finally:
        for n, p in module.named_parameters():
            p.requires_grad_(saved[n])
    cosine = (cos_sum / batches).numpy()
    off = cosine[~np.eye(num_pairs, dtype=bool)]
    labels = pair_labels(layers)
    return {
        "kind": "grad-conflict",
        "format": FORMAT,
        **(source or {}),
        "projector": plan.spec.projector.name,
        "pairs": [{"pair": i, "vla": v, "teacher": t} for i, (v, t) in enumerate(layers.pairs)],
        "params": {"patterns": list(patterns), "lora_only": lora_only, "tensors": len(names),
                   "numel": int(sum(p.numel() for p in params)), "names": names},
        "samples": len(indices),
        "sample_indices": list(indices),
        "batch_size": batch_size,
        "batches": batches,
        "data": plan.spec.data.dataset or "bundled",
        "grad_norm_mean": [float(x) for x in norm_sum / batches],
        "summary": {"mean_off_diagonal": float(off.mean()) if off.size else None,
                    "min_off_diagonal": float(off.min()) if off.size else None},
        "primary": "cosine",
        "matrices": {"cosine": matrix_doc(cosine, labels, labels, "pair", "pair")},
    }


# ---- 3. projector similarity ----------------------------------------------------------------------

def profile_projector_similarity(
    plan: AlignPlan,
    module: AlignModule,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Token-mean cosine between the pairs' projector inputs, outputs and targets; output-target cosine."""
    device = torch.device(device)
    head = module.head
    if head is None:
        raise RocketError("this run has no alignment head (coefficient 0): there is no projector to inspect")
    module.to(device).eval()
    layers = plan.layers
    num_pairs = len(layers.vla)
    sums = {k: torch.zeros(num_pairs, num_pairs, dtype=torch.float64) for k in ("inputs", "outputs", "targets")}
    out_target = torch.zeros(num_pairs, dtype=torch.float64)
    seen = 0
    with torch.no_grad():
        for batch in iter_batches(dataset, indices, batch_size, device):
            size = len(batch["task"])
            with _autocast(device, plan.spec):
                states = module.vla.forward_align(batch, layers.vla).vision_states
                raw = teacher_features(teacher, batch, layers.teacher, plan.vla_info.num_images)
                inputs = [states[k] for k in layers.vla]
                outputs = head.project(inputs).float().mean(1)  # (L, B, V, C): ensemble mean
            targets = head.pool_targets([raw[k].float() for k in layers.teacher]).float()  # (L, B, N, C)
            for key, value in (("inputs", torch.stack(inputs).float()), ("outputs", outputs), ("targets", targets)):
                sums[key] += token_mean_cosine(value).double().cpu() * size
            if outputs.shape[2] == targets.shape[2]:
                cos = torch.nn.functional.cosine_similarity(outputs, targets, dim=-1)  # (L, B, V)
                out_target += cos.mean(-1).sum(-1).double().cpu()
            else:
                raise RocketError(f"the projector gives {outputs.shape[2]} tokens but the pooled targets have "
                                  f"{targets.shape[2]}; the run's pooling does not match its VLA")
            seen += size
            if progress is not None:
                progress(size)
    labels = pair_labels(layers)
    per_pair = (out_target / seen).tolist()
    return {
        "kind": "projector-similarity",
        "format": FORMAT,
        **(source or {}),
        "projector": plan.spec.projector.name,
        "pairs": [{"pair": i, "vla": v, "teacher": t} for i, (v, t) in enumerate(layers.pairs)],
        "samples": seen,
        "sample_indices": list(indices),
        "batch_size": batch_size,
        "data": plan.spec.data.dataset or "bundled",
        "output_target_cosine": [{"pair": i, "vla": v, "teacher": t, "cosine": c}
                                 for i, ((v, t), c) in enumerate(zip(layers.pairs, per_pair))],
        "primary": "outputs",
        "matrices": {k: matrix_doc(v / seen, labels, labels, "pair", "pair") for k, v in sums.items()},
    }


# ---- writing and comparing ------------------------------------------------------------------------

def save_result(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """JSON + PNG of a grad-conflict or projector-similarity result (CKA: `save_cka`)."""
    kind = doc["kind"]
    if kind == "cka":
        return save_cka(doc, out_dir)
    out = Path(out_dir)
    stem = FILE_STEMS[kind]
    vrange, cmap = KIND_STYLE[kind]
    name = doc.get("checkpoint") or "fresh model"
    if kind == "grad-conflict":
        mean = doc["summary"]["mean_off_diagonal"]
        figure = plots.heatmap(
            out / f"{stem}.png", doc["matrices"]["cosine"],
            f"gradient cosine between pair losses ({doc['projector']} projector; {doc['samples']} samples)",
            vrange, cmap,
            note=f"{name}; params {doc['params']['patterns']} ({doc['params']['numel']:,} values); "
                 + (f"mean off-diagonal {mean:.3f}" if mean is not None else "one pair"),
        )
    else:
        pairs = doc["output_target_cosine"]
        figure = plots.panels(
            out / f"{stem}.png",
            [(doc["matrices"][k], f"{k}: token-mean cosine") for k in ("inputs", "outputs", "targets")],
            vrange, cmap,
            bars=([f"v{p['vla']}-t{p['teacher']}" for p in pairs], [p["cosine"] for p in pairs],
                  "output vs target cosine per pair"),
            title=f"projector similarity ({doc['projector']} projector; {doc['samples']} samples; {name})",
        )
    doc = {**doc, "files": {"figure": str(figure)}}
    return {"json": write_json(out / f"{stem}.json", doc), "figure": figure}


def compare_results(a: dict[str, Any], b: dict[str, Any], matrix: str | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The same matrix of two results of one kind, checked to have the same rows and columns."""
    if a["kind"] != b["kind"]:
        raise RocketError(f"cannot compare a {a['kind']} result with a {b['kind']} result; give two of one kind")
    name = matrix or a.get("primary") or next(iter(a["matrices"]))
    for doc in (a, b):
        if name not in doc["matrices"]:
            raise RocketError(f"matrix '{name}' is not in this {doc['kind']} result; "
                              f"choose one of {', '.join(doc['matrices'])}")
    ma, mb = a["matrices"][name], b["matrices"][name]
    if (ma["rows"], ma["cols"]) != (mb["rows"], mb["cols"]):
        raise RocketError(f"the two '{name}' matrices cover different layers (rows {ma['rows']} x cols {ma['cols']} "
                          f"vs {mb['rows']} x {mb['cols']}); profile both with the same layers")
    return ma, mb, name


def save_compare(a: dict[str, Any], b: dict[str, Any], out: str | Path, labels: tuple[str, str],
                 matrix: str | None = None) -> Path:
    ma, mb, name = compare_results(a, b, matrix)
    vrange, cmap = KIND_STYLE[a["kind"]]
    return plots.compare(out, ma, mb, labels, f"{a['kind']}: {name}", vrange, cmap)
