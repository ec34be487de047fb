"""Wiring: a RunSpec + the registry -> a validated, resolved alignment plan (no weights loaded).

Everything that can be checked from configuration is checked here, before any heavy work: plugin
names, layer indices against each adapter's range, pair counts, width ratios.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from rocket_core.contract_info import expect_type, token_count_problems
from rocket_core.contracts import ProjectorStrategy, TeacherAdapter, TeacherInfo, VLAAdapter, VLAInfo
from rocket_core.errors import RocketError
from rocket_core.registry import Registry, get_registry
from rocket_core.select.layermap import parse_layers
from rocket_core.specs import LayerMap, RunSpec

if TYPE_CHECKING:  # torch loads only when a plan builds its modules: planning (a dry run) stays light
    from rocket_core.align.head import AlignmentHead
    from rocket_core.align.projector import ProjectorBank


@dataclass(frozen=True)
class AlignPlan:
    """A resolved run: plugins, their shape facts, the resolved layer map and the projector layout."""

    spec: RunSpec
    vla: type[VLAAdapter]
    teacher: type[TeacherAdapter]
    projector: type[ProjectorStrategy]
    vla_info: VLAInfo
    teacher_info: TeacherInfo
    layers: LayerMap
    widths: list[int]
    projector_params: int
    plugins: dict[str, dict[str, str | None]] = field(default_factory=dict)  # kind -> provenance, for checkpoints

    def build_projector(self) -> ProjectorBank:
        return self.projector.build(
            len(self.layers.vla),
            self.vla_info.hidden_size,
            self.teacher_info.feature_dim,
            self.spec.projector,
            self.spec.alignment.ensemble_size,
        )

    def build_head(self) -> AlignmentHead:
        from rocket_core.align.head import AlignmentHead

        a = self.spec.alignment
        return AlignmentHead(
            self.build_projector(),
            self.vla_info.num_vision_tokens,
            self.teacher_info.patch_grid,
            self.teacher_info.image_size,
            a.pooling,
            a.teacher_pe,
            a.cosine_eps,
        )


def _requested_layers(spec: RunSpec, vla: type[VLAAdapter], vinfo: VLAInfo, tinfo: TeacherInfo) -> LayerMap:
    if isinstance(spec.layers, LayerMap):
        return spec.layers
    if isinstance(spec.layers, str):
        return parse_layers(spec.layers, vinfo.num_blocks, tinfo.num_layers, vinfo.layer_offset)
    if vinfo.default_layers is None:
        raise RocketError(f"VLA '{vla.name}' has no default layer map; pass --layers (e.g. balanced:10)")
    vla_side, teacher_side = vinfo.default_layers
    return LayerMap(vla=list(vla_side), teacher=list(teacher_side))


def plan_run(spec: RunSpec, registry: Registry | None = None,
             recorded: Mapping[str, Mapping[str, Any]] | None = None) -> AlignPlan:
    """Resolve and validate `spec`; the returned plan's spec has its layer map resolved (no -1 left).

    `recorded` is a checkpoint's `plugins` (kind -> provenance): a missing plugin then names its package.
    """
    reg = registry or get_registry()
    recorded = recorded or {}
    names = {"vla": spec.vla.name, "teacher": spec.teacher.name, "projector": spec.projector.name}
    vla, teacher, projector = (reg.get(kind, name, recorded.get(kind)) for kind, name in names.items())
    vinfo = expect_type("vla", vla.name, "info", vla.info(spec.vla), VLAInfo)
    tinfo = expect_type("teacher", teacher.name, "info", teacher.info(spec.teacher), TeacherInfo)
    for cls, options in ((vla, spec.vla.options), (teacher, spec.teacher.options), (projector, spec.projector.options)):
        if cls.options_model is not None or cls is projector:
            cls.parse_options(options)
    if spec.alignment.coefficient > 0:
        problems = token_count_problems(vla.name, vinfo, tinfo, spec.alignment.pooling)
        if problems:
            raise RocketError(problems[0])

    requested = _requested_layers(spec, vla, vinfo, tinfo)
    layers = LayerMap(
        vla=[vla.resolve_layer(vinfo, i) for i in requested.vla],
        teacher=[teacher.resolve_layer(tinfo, i) for i in requested.teacher],
    )
    if any(b <= a for a, b in zip(layers.vla, layers.vla[1:])):
        raise RocketError(
            f"VLA layers must be strictly increasing (pair order is shallow to deep), got {layers.vla}"
        )
    num_pairs = len(layers.vla)
    if projector.max_pairs is not None and num_pairs > projector.max_pairs:
        raise RocketError(
            f"projector '{projector.name}' takes at most {projector.max_pairs} pair(s), got {num_pairs}; "
            "pass a shorter --layers or another --projector"
        )
    ratios = spec.projector.width_ratios
    if ratios is not None and len(ratios) != num_pairs:
        raise RocketError(f"projector.width_ratios has {len(ratios)} entries for {num_pairs} pairs; give one per pair")

    resolved = spec.model_copy(update={"layers": layers})
    widths, params = projector.layout(num_pairs, vinfo.hidden_size, tinfo.feature_dim, spec.projector,
                                      spec.alignment.ensemble_size)
    return AlignPlan(
        spec=resolved,
        vla=vla,
        teacher=teacher,
        projector=projector,
        vla_info=vinfo,
        teacher_info=tinfo,
        layers=layers,
        widths=widths,
        projector_params=params,
        plugins={kind: reg.plugins[kind][name].provenance() for kind, name in names.items()},
    )
