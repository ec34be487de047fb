"""OpenVLA plugin: key-for-key 7B layout, weight loading checks, ROCKET forward/backward, processor, actions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rocket_core.align.head import AlignmentHead
from rocket_core.errors import RocketError
from rocket_core.specs import LoraSpec, ProjectorSpec, TrainingSpec, VLASpec
from rocket_plugins.projectors.builtin import RocketProjector
from rocket_plugins.vla.openvla import OpenVLAAdapter, processor as proc
from rocket_plugins.vla.openvla.modeling import OpenVLA, OpenVLAConfig
from rocket_plugins.vla.openvla.options import OPENVLA_7B_CONFIG, TINY_CONFIG, OpenVLAOptions
from rocket_plugins.vla.openvla.policy import OpenVLAPolicy
from rocket_plugins.vla.openvla.weights import find_part_file, load_lora_adapter, load_openvla_weights, load_part
from tests.conftest import SHARED_FIXTURES

MANIFEST = SHARED_FIXTURES / "openvla" / "manifest-openvla-7b.json"
TINY = VLASpec(name="openvla", preset="tiny")


def _batch(model: OpenVLAPolicy, b: int = 2) -> dict:
    o = model.opts
    return {
        "images": torch.rand(b, o.num_images, 3, 64, 64),
        "image_masks": torch.ones(b, o.num_images, dtype=torch.bool),
        "state": torch.randn(b, o.proprio_dim),
        "actions": torch.rand(b, o.chunk, o.action_dim) * 2 - 1,
        "task": ["Pick up the black bowl", "open the top drawer of the cabinet"][:b],
    }


@pytest.fixture
def tiny() -> OpenVLAPolicy:
    return OpenVLAAdapter.build(TINY)


# ---- 7B layout ------------------------------------------------------------------------------------
@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"no OpenVLA manifest at {MANIFEST}")
def test_meta_build_matches_manifest_key_for_key() -> None:
    manifest = json.loads(MANIFEST.read_text())
    expected = [(e["name"], tuple(e["shape"])) for e in manifest["state_dict"]]
    for config in (manifest["config_json"], OPENVLA_7B_CONFIG):
        with torch.device("meta"):
            model = OpenVLA(OpenVLAConfig.from_hf(config))
        got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert got == expected
        assert sum(v.numel() for v in model.state_dict().values()) == manifest["total_parameters"]
    with torch.device("meta"):
        policy = OpenVLAPolicy(OpenVLAConfig.from_hf(OPENVLA_7B_CONFIG), OpenVLAOptions(), proc.ByteTokenizer())
        policy.add_oft_parts()
    extra = {(k, tuple(v.shape)) for k, v in policy.state_dict().items()} - set(expected)
    assert {k.split(".")[0] for k, _ in extra} == {"action_head", "proprio_projector"}
    width = next(shape[1] for name, shape in expected if name.endswith("embed_tokens.weight"))  # the LLM's hidden size
    options = OpenVLAOptions()
    assert dict(extra)["action_head.model.fc1.weight"] == (width, options.action_dim * width)
    assert dict(extra)["proprio_projector.fc1.weight"] == (width, options.proprio_dim)


def test_info_reports_paper_layers_without_weights() -> None:
    info = OpenVLAAdapter.info(VLASpec(name="openvla"))
    assert (info.num_blocks, info.hidden_size, info.num_vision_tokens) == (32, 4096, 512)
    assert (info.max_layer_index, info.minus_one, info.num_images) == (32, 31, 2)
    paper = (2, 4, 6, 8, 10, 12, 14, 16, 18, -1)
    assert info.default_layers == (paper, paper)
    assert [OpenVLAAdapter.resolve_layer(info, i) for i in paper] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 31]
    with pytest.raises(RocketError, match="0..32"):
        OpenVLAAdapter.resolve_layer(info, 33)
    assert (info.chunk_size, info.action_dim, info.state_dim, info.normalization) == (8, 7, 8, "quantile")
    one_cam = OpenVLAAdapter.info(VLASpec(name="openvla", options={"num_images": 1, "head": "discrete"}))
    assert one_cam.num_vision_tokens == 256
    assert (one_cam.chunk_size, one_cam.action_dim, one_cam.state_dim) == (1, 7, None)
    no_proprio = OpenVLAAdapter.info(VLASpec(name="openvla", options={"use_proprio": False, "chunk": 4}))
    assert (no_proprio.chunk_size, no_proprio.state_dim) == (4, None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (VLASpec(name="openvla", options={"chunks": 8}), "chunks"),
        (VLASpec(name="openvla", preset="huge"), "unknown openvla preset 'huge'"),
        (VLASpec(name="openvla", options={"head": "discrete"}), "num_images=1"),
        (VLASpec(name="openvla", preset="tiny", checkpoint="openvla/openvla-7b"), "drop the checkpoint"),
    ],
)
def test_bad_spec_is_one_clear_line(spec: VLASpec, message: str) -> None:
    with pytest.raises(RocketError, match=message) as err:
        OpenVLAAdapter.info(spec)
    assert "\n" not in str(err.value)


def test_offline_without_weights_says_what_to_do() -> None:
    with pytest.raises(RocketError, match="rocket pull openvla"):
        OpenVLAAdapter.build(VLASpec(name="openvla", checkpoint="rocket-tests/no-such-openvla"))


# ---- weight loading -------------------------------------------------------------------------------
def _tiny_folder(tmp_path: Path, model: OpenVLA, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `state` (default: the model's) as a two-shard safetensors folder with an index."""
    state = {k: v.contiguous() for k, v in (state if state is not None else model.state_dict()).items()}
    keys = list(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for name, part in shards.items():
        save_file({k: state[k] for k in part}, str(tmp_path / name))
    index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return tmp_path


def _tiny_core() -> OpenVLA:
    return OpenVLA(OpenVLAConfig.from_hf(TINY_CONFIG))


def test_sharded_folder_loads_every_key(tmp_path: Path) -> None:
    source = _tiny_core()
    folder = _tiny_folder(tmp_path, source)
    with torch.device("meta"):
        target = _tiny_core()
    load_openvla_weights(target, folder, torch.float32)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


@pytest.mark.parametrize("defect", ["missing", "shape", "unexpected", "optional"])
def test_sharded_folder_key_checks(tmp_path: Path, defect: str) -> None:
    source = _tiny_core()
    state = dict(source.state_dict())
    if defect == "missing":
        del state["projector.fc2.bias"]
    elif defect == "shape":
        state["vision_backbone.featurizer.reg_token"] = torch.zeros(1, 3, 32)
    elif defect == "unexpected":
        state["vision_backbone.featurizer.head.weight"] = torch.zeros(2, 2)
    else:
        state["language_model.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(8)
    folder = _tiny_folder(tmp_path, source, state)
    target = _tiny_core()
    if defect == "optional":
        load_openvla_weights(target, folder, torch.float32)
        assert torch.equal(target.projector.fc1.weight, source.projector.fc1.weight)
        return
    names = {"missing": "projector.fc2.bias", "shape": "vision_backbone.featurizer.reg_token", "unexpected": "featurizer.head.weight"}
    with pytest.raises(RocketError, match=names[defect]):
        load_openvla_weights(target, folder, torch.float32)


def test_build_from_local_folders(tmp_path: Path, tiny: OpenVLAPolicy) -> None:
    """A merged fine-tune folder (weights + reference heads + stats), then a LoRA-only folder over a base."""
    stats = {"libero_spatial": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7}}}
    full = tmp_path / "full"
    full.mkdir()
    core = {k: v for k, v in tiny.state_dict().items() if not k.startswith(("action_head", "proprio_projector"))}
    _tiny_folder(full, tiny, core)
    (full / "config.json").write_text(json.dumps(TINY_CONFIG))
    (full / "dataset_statistics.json").write_text(json.dumps(stats))
    for part in ("action_head", "proprio_projector"):
        torch.save({"module." + k: v for k, v in getattr(tiny, part).state_dict().items()}, full / f"{part}--100_checkpoint.pt")
    bank = RocketProjector.build(2, tiny.info.hidden_size, 24, ProjectorSpec(name="rocket"), 1)
    torch.save({"module." + k: v for k, v in bank.state_dict().items()}, full / "align_projectors--100_checkpoint.pt")
    spec = VLASpec(name="openvla", checkpoint=str(full), options={"dtype": "float32"})
    assert OpenVLAAdapter.info(spec) == tiny.info
    built = OpenVLAAdapter.build(spec)
    assert isinstance(built.tokenizer, proc.ByteTokenizer) and built.config.norm_stats == stats
    bank.load_state_dict(built.align_projectors_state)  # the reference names load into the core's bank
    for key, value in tiny.state_dict().items():
        assert torch.equal(built.state_dict()[key], value), key
    assert built.lora is None and not any(".lora_" in n for n, _ in built.named_parameters())  # build applies no LoRA

    lora_only = tmp_path / "lora_only"
    tiny.add_lora(rank=2, alpha=4)
    tiny.save_trained(lora_only)
    options = {"dtype": "float32", "base_checkpoint": str(full)}
    adapted = OpenVLAAdapter.build(VLASpec(name="openvla", checkpoint=str(lora_only), options=options))
    lora = {k: v for k, v in tiny.state_dict().items() if ".lora_" in k}
    assert lora and all(torch.equal(adapted.state_dict()[k], v) for k, v in lora.items())
    assert adapted.lora == {"rank": 2, "alpha": 4, "dropout": 0.0}
    with pytest.raises(RocketError, match="rank 2, alpha 4 but training.lora asks for rank 32, alpha 16"):
        adapted.configure_training(TrainingSpec())
    adapted.configure_training(TrainingSpec(lora=LoraSpec(rank=2, alpha=4)))  # keeps training the loaded adapter
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in adapted.named_parameters() if ".lora_" in n or n.startswith(("action_head", "proprio_projector"))}
    assert sum(".lora_A" in n for n in trainable) == sum(".lora_A" in n for n, _ in tiny.named_parameters())
    with pytest.raises(RocketError, match="neither OpenVLA weights nor a lora_adapter"):
        OpenVLAAdapter.build(VLASpec(name="openvla", checkpoint=str(tmp_path / "lora_only" / "lora_adapter")))


def test_reference_oft_parts_load_with_module_prefix(tmp_path: Path, tiny: OpenVLAPolicy) -> None:
    fresh = OpenVLAAdapter.build(TINY)
    for part in ("action_head", "proprio_projector"):
        state = {"module." + k: v for k, v in getattr(tiny, part).state_dict().items()}
        torch.save(state, tmp_path / f"{part}--5000_checkpoint.pt")
        path = find_part_file(tmp_path, part)
        assert path is not None and path.name == f"{part}--5000_checkpoint.pt"
        load_part(getattr(fresh, part), path)
        for k, v in getattr(tiny, part).state_dict().items():
            assert torch.equal(getattr(fresh, part).state_dict()[k], v)
    torch.save({"module.model.fc2.bias": torch.zeros(7)}, tmp_path / "action_head--6000_checkpoint.pt")
    with pytest.raises(RocketError, match="checkpoint_step"):
        find_part_file(tmp_path, "action_head")
    with pytest.raises(RocketError, match="missing"):
        load_part(fresh.action_head, tmp_path / "action_head--6000_checkpoint.pt")


def test_trained_parts_round_trip_as_safetensors_and_lora(tmp_path: Path, tiny: OpenVLAPolicy) -> None:
    base = {k: v.clone() for k, v in tiny.state_dict().items()}
    tiny.add_lora(rank=4, alpha=8)
    with torch.no_grad():
        for name, p in tiny.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    tiny.save_trained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"action_head.safetensors", "proprio_projector.safetensors", "lora_adapter"}
    restored = OpenVLAAdapter.build(TINY)
    restored.load_state_dict(base)
    load_lora_adapter(restored, tmp_path / "lora_adapter")
    for part in ("action_head", "proprio_projector"):
        load_part(getattr(restored, part), find_part_file(tmp_path, part))
    batch = _batch(tiny)
    tiny.eval(), restored.eval()
    with torch.no_grad():
        a, b = tiny.forward_align(batch, [2]), restored.forward_align(batch, [2])
    assert a.action_loss.item() == pytest.approx(b.action_loss.item(), abs=1e-6)
    torch.testing.assert_close(a.vision_states[2], b.vision_states[2])


# ---- ROCKET training path -------------------------------------------------------------------------
def test_forward_backward_through_lora_and_rocket_loss(tiny: OpenVLAPolicy) -> None:
    info = tiny.info
    layers = [OpenVLAAdapter.resolve_layer(info, i) for i in info.default_layers[0]]
    assert tiny.lora_defaults == LoraSpec().model_dump()  # the TrainingSpec defaults are the paper's
    tiny.configure_training(TrainingSpec())
    assert tiny.lora == tiny.lora_defaults
    batch = _batch(tiny)
    out = tiny.forward_align(batch, layers)
    assert set(out.vision_states) == set(layers)
    assert all(v.shape == (2, info.num_vision_tokens, info.hidden_size) for v in out.vision_states.values())
    s, grid, c = 2, (4, 4), 24  # teacher: 2 frames of a 4x4 patch grid, width 24
    bank = RocketProjector.build(len(layers), info.hidden_size, c, ProjectorSpec(name="rocket"), 1)
    head = AlignmentHead(bank, info.num_vision_tokens, grid, (56, 56))
    teacher = [torch.randn(2, s, grid[0] * grid[1], c) for _ in layers]
    align = head([out.vision_states[k] for k in layers], teacher, out.token_mask)
    total = out.action_loss + 0.5 * align.loss
    total.backward()
    assert 0 < out.action_loss.item() < 2 and 0 < align.loss.item() < 2
    grads = {n: p.grad for n, p in tiny.named_parameters()}
    assert all(grads[n] is None for n in grads if n.startswith("vision_backbone."))
    assert all(g is None for n, g in grads.items() if ".lora_" not in n and n.startswith(("language_model.", "projector.")))
    lora_b = [g for n, g in grads.items() if "lora_B" in n]
    assert len(lora_b) == 7 * tiny.config.num_layers and all(g is not None and g.abs().sum() > 0 for g in lora_b)
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.startswith("action_head."))
    assert bank[0][0].fc1.weight.grad.abs().sum() > 0


def _trainable(model: OpenVLAPolicy) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_configure_training_modes() -> None:
    """LoRA: adapters (rank/alpha/dropout from the spec) + the OFT parts; full: everything but the frozen ViTs."""
    heads = ("action_head.", "proprio_projector.")
    lora = OpenVLAAdapter.build(TINY)
    lora.configure_training(TrainingSpec(lora=LoraSpec(rank=4, alpha=8, dropout=0.1)))
    names = {n for n, _ in lora.named_parameters()}
    assert _trainable(lora) == {n for n in names if ".lora_" in n or n.startswith(heads)}
    assert lora.lora == {"rank": 4, "alpha": 8, "dropout": 0.1}
    q = lora.language_model.model.layers[0].self_attn.q_proj
    assert q.lora_A["default"].weight.shape == (4, 64) and q.scaling["default"] == 2.0 and q.lora_dropout["default"].p == 0.1
    assert not any(".lora_" in n for n in names if not n.startswith("language_model."))  # lora_scope llm

    full = OpenVLAAdapter.build(TINY)
    full.configure_training(TrainingSpec(finetune="full"))
    assert full.lora is None and _trainable(full) == {n for n, _ in full.named_parameters() if not n.startswith("vision_backbone.")}

    spec = VLASpec(name="openvla", preset="tiny", options={"train_vision_backbone": True, "lora_scope": "all-linear"})
    everything = OpenVLAAdapter.build(spec)
    everything.configure_training(TrainingSpec(finetune="full"))
    assert all(p.requires_grad for p in everything.parameters())
    wide = OpenVLAAdapter.build(spec)
    wide.configure_training(TrainingSpec(lora=LoraSpec(rank=2, alpha=2)))
    trainable = _trainable(wide)
    assert any(n.startswith("vision_backbone.") and ".lora_" in n for n in trainable)
    assert any(n.startswith("projector.") and ".lora_" in n for n in trainable)
    assert "vision_backbone.featurizer.pos_embed" in trainable  # the backbone trains in full
    assert not any(n.startswith(("projector.", "language_model.")) and ".lora_" not in n for n in trainable)


def test_gradient_checkpointing_gives_the_same_loss_and_grads() -> None:
    """Checkpointed Llama layers and (trained) ViT blocks recompute exactly what the plain pass computed."""
    results = []
    for flag in (False, True):
        torch.manual_seed(0)
        model = OpenVLAAdapter.build(VLASpec(name="openvla", preset="tiny", options={"train_vision_backbone": True}))
        model.configure_training(TrainingSpec(finetune="full", gradient_checkpointing=flag))
        assert model.language_model.model.gradient_checkpointing == flag
        assert model.vision_backbone.featurizer.gradient_checkpointing == flag
        calls: list[str] = []
        # the first op of a Llama layer and of a ViT block (hooks on the layers themselves stay outside the
        # checkpoint, and a recompute stops once it has what backward needs)
        for first in (model.language_model.model.layers[0].input_layernorm, model.vision_backbone.featurizer.blocks[0].norm1):
            first.register_forward_pre_hook(lambda m, _: calls.append(type(m).__name__))  # noqa: B023 (one list)
        torch.manual_seed(1)
        out = model.forward_align(_batch(model), [2])
        (out.action_loss + out.vision_states[2].square().mean()).backward()
        assert sorted(calls) == sorted(["LlamaRMSNorm", "LayerNorm"] * (2 if flag else 1))  # recomputed in backward
        results.append((out.action_loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    unused = {n for n, g in grads_a.items() if g is None}  # lm_head, ViT blocks past the feature block, ...
    assert unused == {n for n, g in grads_b.items() if g is None}
    assert not any(n.startswith(("vision_backbone.featurizer.blocks.0.", "language_model.model.layers.")) for n in unused)
    for name, grad in grads_a.items():
        if grad is not None:
            torch.testing.assert_close(grad, grads_b[name], atol=1e-6, rtol=1e-5, msg=name)
    model.configure_training(TrainingSpec(finetune="full"))  # and off again
    assert not model.language_model.model.gradient_checkpointing and not model.vision_backbone.featurizer.gradient_checkpointing


def test_vision_slice_and_layer_convention(tiny: OpenVLAPolicy) -> None:
    tiny.eval()
    batch = _batch(tiny)
    v = tiny.info.num_vision_tokens
    with torch.no_grad():
        out = tiny.forward_align(batch, [0, 3, 4])
        ids, mask, labels, _ = tiny._sequence(batch["task"])
        full = tiny(tiny._pixels(batch["images"]), ids, mask, labels, batch["state"], bidirectional=True)
    torch.testing.assert_close(out.vision_states[3], full.hidden_states[3][:, 2 : 2 + v])
    torch.testing.assert_close(out.vision_states[4], full.hidden_states[4][:, 2 : 2 + v])
    # index 0 is the embedding sequence: shifted by one, so its last row is the proprio token
    proprio = tiny.proprio_projector(batch["state"])
    torch.testing.assert_close(out.vision_states[0][:, -1], proprio)
    torch.testing.assert_close(out.vision_states[0][:, :-1], full.projector_features[:, 1:])
    # index L (= max_layer_index) is the final-norm state: the logits are lm_head of it
    assert len(full.hidden_states) == tiny.info.max_layer_index + 1
    torch.testing.assert_close(full.logits, tiny.language_model.lm_head(full.hidden_states[-1]))
    tiny.opts = tiny.opts.model_copy(update={"shift_vision_tokens": False})
    with torch.no_grad():
        unshifted = tiny.forward_align(batch, [0])
    torch.testing.assert_close(unshifted.vision_states[0], full.projector_features)


def test_training_and_inference_read_the_same_action_positions(tiny: OpenVLAPolicy) -> None:
    tiny.eval()
    batch = _batch(tiny)
    with torch.no_grad():
        _, chunk = tiny._chunk_forward(batch["images"], batch["task"], batch["state"], keep=False)
        alone = tiny.predict_observation(batch["images"][1], batch["task"][1], batch["state"][1], unnormalize=False)
        both = tiny.predict_action({k: batch[k] for k in ("images", "image_masks", "state", "task")})
    assert alone.shape == (tiny.opts.chunk, tiny.opts.action_dim)
    np.testing.assert_allclose(alone, chunk[1].numpy(), atol=1e-5)  # padding of sample 0 does not leak in
    torch.testing.assert_close(both, chunk)
    out = tiny.forward_align({**batch, "actions": chunk}, [1])
    assert out.action_loss.item() == pytest.approx(0.0, abs=1e-6)
    pad = {**batch, "actions": chunk.clone(), "action_is_pad": torch.zeros(2, tiny.opts.chunk, dtype=torch.bool)}
    pad["actions"][:, -1] += 5.0
    pad["action_is_pad"][:, -1] = True
    assert tiny.forward_align(pad, [1]).action_loss.item() == pytest.approx(0.0, abs=1e-6)


def test_camera_and_proprio_mismatch_fail_clearly(tiny: OpenVLAPolicy) -> None:
    batch = _batch(tiny)
    with pytest.raises(RocketError, match="2 cameras but the batch has 1"):
        tiny.forward_align({**batch, "images": batch["images"][:, :1]}, [1])
    with pytest.raises(RocketError, match="proprio state of 8 dims, got 5"):
        tiny.forward_align({**batch, "state": torch.zeros(2, 5)}, [1])


# ---- processor and actions ------------------------------------------------------------------------
def test_action_tokenizer_round_trip_on_the_vocabulary_tail() -> None:
    cfg = OpenVLAConfig.from_hf(OPENVLA_7B_CONFIG)
    tok = proc.ActionTokenizer(cfg.action_vocab_size, cfg.n_action_bins)
    assert (tok.vocab_size, tok.begin, cfg.action_token_begin) == (32000, 31743, 31743)
    actions = torch.cat([torch.rand(1000) * 2 - 1, torch.tensor([-1.0, 1.0, 0.0, -3.0, 3.0])])
    ids = tok.encode(actions)
    assert ids.min().item() == 31744 and ids.max().item() == 31999
    back = tok.decode(ids)
    assert (back - actions.clamp(-1, 1)).abs().max().item() <= 1 / 255 + 1e-6
    assert torch.equal(tok.encode(back), ids.clamp(min=tok.begin + 2))  # centres are fixed points (bar the +1 edge)
    assert tok.decode(torch.tensor([32000, 31700])).tolist() == pytest.approx([tok.centres[0], tok.centres[-1]])


def test_unnormalize_uses_q01_q99_and_the_mask() -> None:
    stats = {"q01": [-2.0, 0.0, 0.0], "q99": [2.0, 10.0, 1.0], "min": [-4.0, -1.0, 0.0], "max": [4.0, 11.0, 1.0], "mask": [True, True, False]}
    x = np.array([[-1.0, 1.0, 0.3], [0.0, 0.0, -1.0]])
    out = proc.unnormalize(x, stats)
    np.testing.assert_allclose(out, [[-2.0, 10.0, 0.3], [0.0, 5.0, -1.0]], atol=1e-6)
    np.testing.assert_allclose(proc.unnormalize(x, stats, "bounds")[0, :2], [-4.0, 11.0], atol=1e-6)
    np.testing.assert_allclose(proc.normalize(out, stats), x, atol=1e-6)
    norm_stats = {"libero_spatial": {"action": stats}, "libero_goal": {"action": stats}}
    with pytest.raises(RocketError, match="libero_goal, libero_spatial"):
        proc.dataset_stats(norm_stats, None)
    assert proc.dataset_stats(norm_stats, "libero_goal")["action"] is stats


def test_pixel_values_stack_both_normalisations() -> None:
    images = torch.rand(2, 2, 3, 28, 28)
    px = proc.pixel_values(images, 28)
    assert px.shape == (2, 12, 28, 28)
    mean, std = torch.tensor(proc.IMAGENET_MEAN_STD[0]).view(3, 1, 1), torch.tensor(proc.IMAGENET_MEAN_STD[1]).view(3, 1, 1)
    torch.testing.assert_close(px[:, 6:9], (images[:, 1] - mean) / std)
    torch.testing.assert_close(px[:, 9:12], images[:, 1] * 2 - 1)
    resized = proc.pixel_values(torch.full((1, 1, 3, 70, 50), 0.25), 56)
    assert resized.shape == (1, 6, 56, 56)
    torch.testing.assert_close(resized[0, 3:], torch.full((3, 56, 56), -0.5))
    with pytest.raises(RocketError, match="B, n_cam, 3, H, W"):
        proc.pixel_values(torch.rand(2, 3, 28, 28), 28)


def test_prompt_template() -> None:
    tok = proc.ByteTokenizer()
    ids = proc.prompt_ids(tok, "Pick Up the Bowl")
    text = bytes(i - 3 for i in ids[1:]).decode()
    assert ids[0] == 1 and text == "In: What action should the robot take to pick up the bowl?\nOut: "


def test_discrete_predict_action_decodes_greedy_tokens() -> None:
    model = OpenVLAAdapter.build(VLASpec(name="openvla", preset="tiny", options={"head": "discrete", "num_images": 1}))
    assert model.action_head is None and model.proprio_projector is None
    model.eval()
    image = torch.rand(1, 3, 56, 56)
    tokens = model.generate_action_tokens(image[None], "push the plate")
    assert tokens.shape == (7,)
    with torch.no_grad():  # the KV-cache loop agrees with a plain greedy re-run of the full sequence
        ids = torch.tensor([proc.prompt_ids(model.tokenizer, "push the plate") + tokens[:-1].tolist()])
        out = model(model._pixels(image[None]), ids, torch.ones_like(ids))
    n = len(tokens)
    assert torch.equal(out.logits[0, -n:].argmax(-1), tokens)
    stats = {"q01": [-1.0] * 7, "q99": [3.0] * 7, "mask": [True] * 6 + [False]}
    model.config.norm_stats = {"bridge_orig": {"action": stats}}
    normalised = model.actions.decode(tokens).numpy()
    actions = model.predict_observation(image, "push the plate")
    assert actions.shape == (1, 7)
    batch = {"images": image[None], "image_masks": torch.ones(1, 1, dtype=torch.bool), "task": ["push the plate"]}
    torch.testing.assert_close(model.predict_action(batch), model.actions.decode(tokens)[None, None])
    np.testing.assert_allclose(actions[0, :6], 2 * (normalised[:6] + 1) - 1, atol=1e-5)
    np.testing.assert_allclose(actions[0, 6], normalised[6], atol=1e-6)
