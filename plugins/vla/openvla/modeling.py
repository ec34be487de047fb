"""OpenVLA (Prismatic) in our own code: fused DINOv2+SigLIP backbone, fused GELU MLP projector, Llama-2.

Module names equal the openvla/openvla-7b checkpoint keys (`vision_backbone.featurizer.*`,
`vision_backbone.fused_featurizer.*`, `projector.fc{1,2,3}.*`, `language_model.*`), so its safetensors
load without renaming. The LLM is transformers' own `LlamaForCausalLM`: no remote code, no fork.

The OFT parts (proprio projector, L1-regression action head) are optional children with the reference's
names, so the reference's `proprio_projector--*` / `action_head--*` state dicts load unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from rocket_core.errors import RocketError
from rocket_plugins.vla.openvla.shapes import ViTConfig, fused_vits
from rocket_plugins.vla.openvla.vit import VisionTransformer

IGNORE_INDEX = -100

_TEXT_CONFIG_IGNORED = ("model_type", "torch_dtype", "dtype")


@dataclass
class OpenVLAConfig:
    """Sizes of one OpenVLA, from an HF `config.json` (plus timm size overrides for tiny models)."""

    featurizer: ViTConfig
    fused_featurizer: ViTConfig
    text: LlamaConfig
    pad_to_multiple_of: int = 64
    n_action_bins: int = 256
    norm_stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hf(
        cls,
        config: Mapping[str, Any],
        timm_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        attn_implementation: str = "sdpa",
    ) -> OpenVLAConfig:
        """Parse an OpenVLA `config.json` mapping; `timm_kwargs` maps a timm id to extra create_model kwargs.

        Without `timm_kwargs`, the mapping's own `timm_create_model_kwargs` (tiny models) are used.

        `attn_implementation` is the LLM's ("sdpa" or "eager"; they agree within 4.3e-6).
        """
        featurizer, fused = fused_vits(config, timm_kwargs)
        text = {k: v for k, v in config["text_config"].items() if k not in _TEXT_CONFIG_IGNORED}
        stats = config.get("norm_stats")
        return cls(
            featurizer=featurizer,
            fused_featurizer=fused,
            text=LlamaConfig(**text, attn_implementation=attn_implementation),  # type: ignore[call-arg]  # a PretrainedConfig kwarg
            pad_to_multiple_of=config.get("pad_to_multiple_of", 64),
            n_action_bins=config.get("n_action_bins", 256),
            norm_stats=stats if isinstance(stats, dict) else {},
        )

    @property
    def vision_dim(self) -> int:
        return self.featurizer.embed_dim + self.fused_featurizer.embed_dim

    @property
    def hidden_size(self) -> int:
        return self.text.hidden_size

    @property
    def num_layers(self) -> int:
        return self.text.num_hidden_layers

    @property
    def image_size(self) -> int:
        return self.featurizer.image_size

    @property
    def patches_per_image(self) -> int:
        return self.featurizer.num_patches

    @property
    def action_vocab_size(self) -> int:
        """The vocabulary before padding: action bins are its last `n_action_bins` ids."""
        return self.text.vocab_size - self.pad_to_multiple_of

    @property
    def action_token_begin(self) -> int:
        """Ids above this are action tokens (31743 for Llama-2: ids 31744..31999)."""
        return self.action_vocab_size - self.n_action_bins - 1


class FusedVisionBackbone(nn.Module):
    """DINOv2 on channels 0:3 and SigLIP on 3:6 of every image, features concatenated (DINOv2 first)."""

    def __init__(self, cfg: OpenVLAConfig) -> None:
        super().__init__()
        if cfg.featurizer.num_patches != cfg.fused_featurizer.num_patches:
            raise RocketError("the two OpenVLA ViTs must give the same number of patches per image")
        self.featurizer = VisionTransformer(cfg.featurizer)
        self.fused_featurizer = VisionTransformer(cfg.fused_featurizer)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 6*n_images, S, S) -> (B, n_images*patches, vision_dim), image 0 first; all images in one pass."""
        b, c, h, w = pixel_values.shape
        images = pixel_values.reshape(b * (c // 6), 6, h, w)
        feats = torch.cat([self.featurizer(images[:, :3]), self.fused_featurizer(images[:, 3:])], dim=-1)
        return feats.reshape(b, -1, feats.shape[-1])


class FusedMLPProjector(nn.Module):
    """fc1 (vision -> 4*vision), GELU, fc2 (-> llm), GELU, fc3 (llm -> llm)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


class ProprioProjector(nn.Module):
    """OFT proprio token: Linear(proprio -> D), GELU, Linear(D -> D)."""

    def __init__(self, llm_dim: int, proprio_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(proprio)))


class MLPResNetBlock(nn.Module):
    """Pre-norm residual block: x + ReLU(Linear(LayerNorm(x)))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    def __init__(self, num_blocks: int, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.mlp_resnet_blocks = nn.ModuleList(MLPResNetBlock(hidden_dim) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class L1RegressionActionHead(nn.Module):
    """OFT parallel-decoding head: the action_dim hidden states of one chunk step, concatenated, -> one action."""

    def __init__(self, llm_dim: int, action_dim: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.model = MLPResNet(num_blocks, action_dim * llm_dim, llm_dim, action_dim)

    def forward(self, action_hidden: torch.Tensor, chunk: int) -> torch.Tensor:
        """(B, chunk*action_dim, D) -> (B, chunk, action_dim)."""
        return self.model(action_hidden.reshape(action_hidden.shape[0], chunk, -1))


@dataclass
class PrismaticOutput:
    hidden_states: tuple[torch.Tensor, ...]
    projector_features: torch.Tensor
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class OpenVLA(nn.Module):
    """The Prismatic VLM plus optional OFT parts; `state_dict()` uses the checkpoint's names."""

    def __init__(self, cfg: OpenVLAConfig) -> None:
        super().__init__()
        self.config = cfg
        self.vision_backbone = FusedVisionBackbone(cfg)
        self.projector = FusedMLPProjector(cfg.vision_dim, cfg.hidden_size)
        self.language_model = LlamaForCausalLM(cfg.text)
        self.proprio_projector: ProprioProjector | None = None  # OFT parts: see OpenVLAPolicy.add_oft_parts
        self.action_head: L1RegressionActionHead | None = None

    def embed(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The LLM input `[BOS, patches, proprio?, rest]`, its mask and labels, and the projector output.

        As in the OFT reference, a labelled action token (label > action_token_begin) enters as a zero
        embedding (RoPE still applies there); the stop token and unlabelled tokens are unchanged.
        """
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if labels is not None:
            is_action = (labels != IGNORE_INDEX) & (labels > self.config.action_token_begin)
            embeds = embeds * ~is_action[..., None]
        patches = self.projector(self.vision_backbone(pixel_values.to(embeds.dtype)))
        prefix = patches
        if proprio is not None:
            if self.proprio_projector is None:
                raise RocketError("this OpenVLA has no proprio projector; set options.use_proprio=true")
            own = self.proprio_projector.fc1.weight.dtype  # float32 when kept so (the reference), else the LLM's
            prefix = torch.cat([patches, self.proprio_projector(proprio.to(own)).to(embeds.dtype)[:, None]], dim=1)
        b, n = prefix.shape[:2]
        seq = torch.cat([embeds[:, :1], prefix, embeds[:, 1:]], dim=1)
        mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(b, n), attention_mask[:, 1:]], dim=1)
        mm_labels = None
        if labels is not None:
            mm_labels = torch.cat([labels[:, :1], labels.new_full((b, n), IGNORE_INDEX), labels[:, 1:]], dim=1)
        return seq, mask, mm_labels, patches

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        bidirectional: bool = False,
        with_logits: bool = True,
    ) -> PrismaticOutput:
        """One multimodal pass with every hidden state: [0] embeddings, [k] layer k's output, [-1] final norm.

        `bidirectional` lets every token see every non-padding token, as the OFT transformers fork that
        trained OpenVLA-OFT / ROCKET does; False is the stock causal Llama. `with_logits=False` skips the
        lm_head (the L1 path never needs the 32064-way logits).
        """
        seq, mask, mm_labels, patches = self.embed(pixel_values, input_ids, attention_mask, labels, proprio)
        attn: torch.Tensor = mask
        if bidirectional:
            keep = mask.bool()[:, None, None, :].expand(-1, 1, seq.shape[1], -1)
            attn = torch.zeros(keep.shape, dtype=seq.dtype, device=seq.device).masked_fill(
                ~keep, torch.finfo(seq.dtype).min
            )
        if with_logits:
            out = self.language_model(
                inputs_embeds=seq, attention_mask=attn, labels=mm_labels, output_hidden_states=True, use_cache=False
            )
            return PrismaticOutput(out.hidden_states, patches, out.logits, out.loss)
        out = self.language_model.model(
            inputs_embeds=seq, attention_mask=attn, output_hidden_states=True, use_cache=False
        )
        return PrismaticOutput(out.hidden_states, patches)
