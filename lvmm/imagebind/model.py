"""The ImageBind network: per-modality preprocessors, transformer trunks, heads and postprocessors.

The module tree mirrors the official ``ImageBindModel`` (facebookresearch/ImageBind) so that its
``state_dict`` has exactly the official key names and order, and ``imagebind_huge.pth`` loads with
``strict=True``. The code is our own; only the architecture and the names follow the original.

Each modality goes through four stages held in ``nn.ModuleDict``s::

    modality_preprocessors[m]  -> tokens (B, N, D) (+ attention mask / pooling index)
    modality_trunks[m]         -> pre-norm transformer blocks, (B, N, D)
    modality_heads[m]          -> LayerNorm, pick one token, project to the shared width, (B, E)
    modality_postprocessors[m] -> L2-normalise, times a per-modality logit scale, (B, E)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .configs import MODALITIES, ImageBindConfig, resolve_config

# LayerNorm epsilons of the official model: the patch stems use torch's default, everything else 1e-6.
STEM_LN_EPS = 1e-5
LN_EPS = 1e-6
MLP_RATIO = 4
# Logit scales: the text scale is learnable (initialised at 1/0.07, CLIP's temperature); the others
# are fixed buffers. Scales are clipped at 100 as in CLIP.
TEXT_LOGIT_SCALE_INIT = 1 / 0.07
FIXED_LOGIT_SCALES = {"audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
MAX_LOGIT_SCALE = 100.0
IMU_HEAD_DROPOUT = 0.5
INIT_STD = 0.02
TEXT_POS_INIT_STD = 0.01
EMBEDDING_INIT_STD = 1.0  # random stand-in models only, see ImageBind.reset_parameters


@dataclass
class Tokens:
    """What a preprocessor hands to the trunk and head of its modality."""

    tokens: torch.Tensor  # (B, N, D)
    attn_mask: torch.Tensor | None = None  # (N, N) additive, for text only
    head_kwargs: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Preprocessors
# ----------------------------------------------------------------------------------------------


class PadIm2Video(nn.Module):
    """Turn an image batch ``(B, C, H, W)`` into a clip ``(B, C, T, H, W)`` by repeating it in time."""

    def __init__(self, ntimes: int):
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)  # (B, C, 1, H, W)
        if x.shape[2] == 1:
            # Repeating (not zero-padding) is what the checkpoint was trained with.
            x = x.expand(-1, -1, self.ntimes, -1, -1)
        return x


class VideoPatchStem(nn.Module):
    """Vision stem: repeat to ``ntimes`` frames, then a bias-free Conv3d with kernel = stride.

    The padder sits at index 0 of ``proj`` so that the conv weight is ``proj.1.weight`` as upstream.
    """

    def __init__(self, in_channels: int, dim: int, kernel_size: tuple[int, int, int], ntimes: int):
        super().__init__()
        self.proj = nn.Sequential(
            PadIm2Video(ntimes), nn.Conv3d(in_channels, dim, kernel_size, stride=kernel_size, bias=False)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        x = self.proj(x)  # (B, D, T', H', W')
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # (B, T'H'W', D), row-major (t, row, col)


class PatchStem(nn.Module):
    """Audio/depth/thermal stem: a bias-free Conv2d over ``(B, 1, H, W)``, then a LayerNorm."""

    def __init__(self, dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size, stride=stride, bias=False)
        self.norm_layer = nn.LayerNorm(dim, eps=STEM_LN_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        x = self.proj(x)  # (B, D, H', W')
        grid = tuple(x.shape[2:])
        return self.norm_layer(x.flatten(2).transpose(1, 2)), grid  # (B, H'W', D)


class PosEmbedding(nn.Module):
    """Learned positional embedding ``(1, 1 + N, D)`` for a cls token plus an ``N``-patch grid."""

    def __init__(self, num_tokens: int, dim: int, grid: tuple[int, ...], interpolate: bool):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))
        self.grid = tuple(grid)
        self.interpolate = interpolate

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        if tuple(grid) == self.grid:
            return tokens + self.pos_embed
        if not self.interpolate or len(grid) != len(self.grid) or grid[:-2] != self.grid[:-2]:
            raise ValueError(f"input gives a {grid} patch grid; this modality only supports {self.grid}")
        # Bicubic resampling of the (H, W) grid lets vision take other resolutions. Upstream passes a
        # scale factor instead of the size; the two agree when the ratio is an integer.
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        h, w = self.grid[-2:]
        patch_pos = patch_pos.reshape(1, h, w, -1).permute(0, 3, 1, 2)  # (1, D, h, w)
        patch_pos = F.interpolate(patch_pos.float(), size=grid[-2:], mode="bicubic", align_corners=False).to(
            patch_pos.dtype
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, patch_pos.shape[1])
        if len(grid) == 3:  # the time axis of a clip: the same spatial table for every frame
            patch_pos = patch_pos.repeat(1, grid[0], 1)
        return tokens + torch.cat([cls_pos, patch_pos], dim=1)


class PatchPreprocessor(nn.Module):
    """cls token + patch stem + positional embedding (vision, audio, depth, thermal)."""

    def __init__(self, stem_name: str, stem: nn.Module, dim: int, grid: tuple[int, ...], interpolate: bool = False):
        super().__init__()
        # Registration order fixes the state-dict order: cls_token, stem, pos_embedding_helper.
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.stem_name = stem_name
        self.add_module(stem_name, stem)
        self.pos_embedding_helper = PosEmbedding(1 + math.prod(grid), dim, grid, interpolate)

    def forward(self, x: torch.Tensor) -> Tokens:
        patches, grid = getattr(self, self.stem_name)(x)  # (B, N, D)
        cls = self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype)
        tokens = torch.cat([cls, patches], dim=1)  # (B, 1 + N, D)
        return Tokens(self.pos_embedding_helper(tokens, grid))


class TextPreprocessor(nn.Module):
    """Token embedding + positional embedding, and the causal mask the trunk uses."""

    def __init__(self, vocab_size: int, context_length: int, dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, dim))
        # Stored in the official checkpoint, so it is a persistent buffer.
        self.register_buffer("mask", causal_mask(context_length))

    def forward(self, ids: torch.Tensor) -> Tokens:
        if ids.ndim != 2 or ids.shape[1] > self.pos_embed.shape[1]:
            raise ValueError(f"text ids must be (B, L<={self.pos_embed.shape[1]}), got {tuple(ids.shape)}")
        n = ids.shape[1]
        tokens = self.token_embedding(ids) + self.pos_embed[:, :n]  # (B, L, D)
        # The head pools the first position holding the largest id: the end-of-text token.
        return Tokens(tokens, attn_mask=self.mask[:n, :n], head_kwargs={"eos_index": ids.argmax(dim=-1)})


def causal_mask(n: int) -> torch.Tensor:
    """``(n, n)`` additive mask: 0 on and below the diagonal, -inf above."""
    return torch.full((n, n), float("-inf")).triu_(1)


class IMUStem(nn.Module):
    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(in_features, dim, bias=False)
        self.norm_layer = nn.LayerNorm(dim, eps=STEM_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_layer(self.proj(x))


class IMUPreprocessor(nn.Module):
    """Cut ``(B, C, T)`` sensor streams into windows of ``kernel`` samples and embed each window."""

    def __init__(self, channels: int, samples: int, kernel: int, dim: int):
        super().__init__()
        self.kernel = kernel
        num_windows = samples // kernel
        # Upstream registers pos_embed before cls_token; the order is kept for the state dict.
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + num_windows, dim))
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.imu_stem = IMUStem(channels * kernel, dim)

    def forward(self, x: torch.Tensor) -> Tokens:
        windows = x.unfold(-1, self.kernel, self.kernel)  # (B, C, W, k)
        windows = windows.permute(0, 2, 1, 3).flatten(2)  # (B, W, C*k), channel-major in a window
        patches = self.imu_stem(windows)
        cls = self.cls_token.expand(patches.shape[0], -1, -1).to(patches.dtype)
        return Tokens(torch.cat([cls, patches], dim=1) + self.pos_embed)


# ----------------------------------------------------------------------------------------------
# Trunk
# ----------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with the parameter names of ``nn.MultiheadAttention``.

    With ``add_bias_kv`` a learned key/value pair (``bias_k``, ``bias_v``, not projected) is appended
    at the end of the key sequence, exactly as ``nn.MultiheadAttention(add_bias_kv=True)`` does; it
    gives every query a learned "attend to nothing" slot. Implemented with
    ``scaled_dot_product_attention`` so that fused kernels are used on GPU.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # rows: Q, K, V
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)  # 3 x (B, N, D)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.to(k.dtype).expand(b, 1, d)], dim=1)  # (B, N + 1, D)
            v = torch.cat([v, self.bias_v.to(v.dtype).expand(b, 1, d)], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))  # the extra key is visible to every query
        q, k, v = (t.unflatten(-1, (h, d // h)).transpose(1, 2) for t in (q, k, v))  # (B, H, N, D/H)
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, N, D/H)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as upstream


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability ``p`` in training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm_1(x))``, then ``x + mlp(norm_2(x))``."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, drop_path: float):
        super().__init__()
        # Registration order (attn, norm_1, mlp, norm_2) is the official state-dict order.
        self.attn = SelfAttention(dim, num_heads, add_bias_kv)
        self.drop_path = DropPath(drop_path)
        self.norm_1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm_1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class Trunk(nn.Module):
    """A stack of blocks; vision alone has a LayerNorm before the first block. No final norm."""

    def __init__(self, dim: int, depth: int, num_heads: int, add_bias_kv: bool, drop_path: float, pre_norm: bool):
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS)) if pre_norm else nn.Identity()
        # Linearly increasing drop-path rates; plain floats so that building on the meta device works.
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, num_heads, add_bias_kv, r) for r in rates)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pre_transformer_layer(x)
        for block in self.blocks:
            x = block(x, attn_mask)
        return x  # (B, N, D)


# ----------------------------------------------------------------------------------------------
# Heads and postprocessors
# ----------------------------------------------------------------------------------------------


class SelectToken(nn.Module):
    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]  # (B, D)


class TextHead(nn.Module):
    """Pick the end-of-text token of each sequence, then LayerNorm and project."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=LN_EPS), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: torch.Tensor, eos_index: torch.Tensor) -> torch.Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eos_index])  # (B, E)


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    """Multiply by ``min(exp(log_logit_scale), 100)``; a parameter when learnable, else a buffer."""

    def __init__(self, init: float, learnable: bool):
        super().__init__()
        value = torch.tensor(math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)
        self.init = init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * x


def _token_head(dim: int, out_dim: int, dropout: float | None = None) -> nn.Sequential:
    layers = [nn.LayerNorm(dim, eps=LN_EPS), SelectToken(0)]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(dim, out_dim, bias=False))


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class ImageBind(nn.Module):
    """ImageBind with the official module tree (and so the official state-dict keys).

    Args:
        config: ``"huge"``, ``"tiny"``, a dict of overrides of the huge sizes, or an
            :class:`ImageBindConfig`.
        modalities: which modalities to build (default: all six). Leaving some out saves memory;
            :meth:`load_official` then ignores their checkpoint entries.

    Parameters are allocated but left uninitialised (``torch.empty``); use :meth:`random` for a
    seeded random model or :meth:`from_checkpoint` for trained weights. Build inside
    ``with torch.device("meta"):`` to get the structure without memory.
    """

    def __init__(self, config: str | Mapping | ImageBindConfig = "huge", modalities: Iterable[str] | None = None):
        super().__init__()
        cfg = resolve_config(config)
        self.cfg = cfg
        mods = tuple(MODALITIES if modalities is None else modalities)
        unknown = [m for m in mods if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; choose from {MODALITIES}")
        # Keep the official order whatever order the caller named them in.
        self.modalities = tuple(m for m in MODALITIES if m in mods)

        pre, trunks, heads, post = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        e = cfg.out_embed_dim
        for m in self.modalities:
            dim = getattr(cfg, f"{m}_embed_dim")
            if m == "vision":
                t, kh, kw = cfg.kernel_size
                grid = (cfg.video_frames // t, cfg.image_size // kh, cfg.image_size // kw)
                stem = VideoPatchStem(3, dim, cfg.kernel_size, cfg.video_frames)
                pre[m] = PatchPreprocessor("rgbt_stem", stem, dim, grid, interpolate=True)
            elif m == "text":
                pre[m] = TextPreprocessor(cfg.text_vocab_size, cfg.text_context_length, dim)
            elif m == "audio":
                k, s = cfg.audio_kernel_size, cfg.audio_stride
                grid = ((cfg.audio_num_mel_bins - k) // s + 1, (cfg.audio_target_len - k) // s + 1)
                pre[m] = PatchPreprocessor("rgbt_stem", PatchStem(dim, k, s), dim, grid)
            elif m in ("depth", "thermal"):
                k = getattr(cfg, f"{m}_kernel_size")
                grid = (cfg.image_size // k, cfg.image_size // k)
                stem_name = "depth_stem" if m == "depth" else "rgbt_stem"
                pre[m] = PatchPreprocessor(stem_name, PatchStem(dim, k, k), dim, grid)
            else:  # imu
                pre[m] = IMUPreprocessor(cfg.imu_channels, cfg.imu_samples, cfg.imu_kernel_size, dim)

            trunks[m] = Trunk(
                dim,
                getattr(cfg, f"{m}_num_blocks"),
                getattr(cfg, f"{m}_num_heads"),
                add_bias_kv=m not in ("vision", "text"),
                drop_path=getattr(cfg, f"{m}_drop_path", 0.0),
                pre_norm=m == "vision",
            )

            if m == "text":
                heads[m] = TextHead(dim, e)
            else:
                heads[m] = _token_head(dim, e, IMU_HEAD_DROPOUT if m == "imu" else None)

            if m == "vision":
                post[m] = nn.Sequential(Normalize())
            elif m == "text":
                post[m] = nn.Sequential(Normalize(), LogitScale(TEXT_LOGIT_SCALE_INIT, learnable=True))
            else:
                post[m] = nn.Sequential(Normalize(), LogitScale(FIXED_LOGIT_SCALES[m], learnable=False))

        self.modality_preprocessors = pre
        self.modality_trunks = trunks
        self.modality_heads = heads
        self.modality_postprocessors = post

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        config: str | Mapping | ImageBindConfig = "tiny",
        seed: int = 0,
        modalities: Iterable[str] | None = None,
        device: torch.device | str | None = None,
    ) -> ImageBind:
        """A seeded random model (eval mode), the same for a given config, seed and torch version.

        The structure is built on the meta device and then materialised once, so that even the
        huge configuration does not pay for PyTorch's default initialisation before ours.
        """
        with torch.device("meta"):
            model = cls(config, modalities)
        model.to_empty(device=device or "cpu")
        model.reset_parameters(torch.Generator(device=device or "cpu").manual_seed(seed))
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls, path, config: str | Mapping | ImageBindConfig = "huge", modalities: Iterable[str] | None = None
    ) -> ImageBind:
        """Build ``config`` and load official-format weights (``.pth`` or ``.safetensors``) strictly."""
        from .weights import load_state_dict_file

        with torch.device("meta"):
            model = cls(config, modalities)
        model.load_official(load_state_dict_file(path), where=str(path), assign=True)
        return model.eval()

    def load_official(self, state: Mapping[str, torch.Tensor], where: str = "state dict", assign: bool = False) -> None:
        """Load an official-format state dict with ``strict=True``.

        Entries of modalities this model was built without are dropped first. A mismatch raises
        :class:`lvmm.checkpoint.CheckpointError` naming the first differing keys and shapes.
        """
        from lvmm.checkpoint import check_state_dict

        skipped = tuple(
            f"{stage}.{m}."
            for m in MODALITIES
            if m not in self.modalities
            for stage in ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")
        )
        state = {k: v for k, v in state.items() if not k.startswith(skipped)}
        check_state_dict(self, state, where)
        self.load_state_dict(state, strict=True, assign=assign)
        if assign:
            # A half-precision checkpoint would otherwise make the model half-precision.
            self.float()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise every parameter and buffer from ``generator`` (for random stand-in models).

        Matrices (linear, conv, attention projections) get a clipped normal with std
        ``fan_in ** -0.5`` and token embeddings std 1, so that every residual branch is of order
        one. The official recipe (std 0.02 everywhere) is meant for training: untrained, it leaves
        the cls token dominant and gives nearly the same embedding (cosine > 0.99) for any two
        images, which would make a random encoder useless as a conditioning signal in tests.
        Biases are 0, LayerNorm weights 1, cls tokens and positional embeddings std 0.02, and the
        logit scales and the text mask take their official values.
        """

        def trunc_normal(t, std=INIT_STD):
            # Normal clipped at two std: like a truncated normal, but a few times faster, which
            # matters for the 1.2 B-parameter huge model.
            t.normal_(0.0, std, generator=generator).clamp_(-2 * std, 2 * std)

        def fan_in_normal(w):
            trunc_normal(w, std=w[0].numel() ** -0.5)

        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                fan_in_normal(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, EMBEDDING_INIT_STD, generator=generator)
            elif isinstance(module, SelfAttention):
                fan_in_normal(module.in_proj_weight)
                module.in_proj_bias.zero_()
                if module.bias_k is not None:
                    module.bias_k.normal_(0.0, INIT_STD, generator=generator)
                    module.bias_v.normal_(0.0, INIT_STD, generator=generator)
            elif isinstance(module, PatchPreprocessor):
                trunc_normal(module.cls_token)
            elif isinstance(module, IMUPreprocessor):
                trunc_normal(module.cls_token)
                trunc_normal(module.pos_embed)
            elif isinstance(module, PosEmbedding):
                trunc_normal(module.pos_embed)
            elif isinstance(module, TextPreprocessor):
                module.pos_embed.normal_(0.0, TEXT_POS_INIT_STD, generator=generator)
                module.mask.copy_(causal_mask(module.mask.shape[0]))
            elif isinstance(module, LogitScale):
                module.log_logit_scale.fill_(math.log(module.init))

    # -- forward -----------------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        return self.cfg.out_embed_dim

    def encode(self, modality: str, x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Embed one modality's model input; ``(B, E)``.

        Inputs with 5 or more dims are ``(B, S, ...)`` clips (audio from :mod:`.audio` is
        ``(B, 3, 1, 128, 204)``): every clip is embedded and the *post-processed* clip embeddings
        are averaged, as upstream. Images must therefore be 4-D ``(B, 3, H, W)``. With
        ``normalize=False`` the head output is returned (per clip for clip inputs: ``(B, S, E)``).
        """
        if modality not in self.modalities:
            raise ValueError(f"this model has no {modality!r} encoder (built: {self.modalities})")
        clips = x.ndim >= 5
        if clips:
            b, s = x.shape[:2]
            x = x.flatten(0, 1)  # (B*S, ...)
        out = self.modality_preprocessors[modality](x)
        feats = self.modality_trunks[modality](out.tokens, out.attn_mask)
        emb = self.modality_heads[modality](feats, **out.head_kwargs)  # (B[*S], E)
        if normalize:
            emb = self.modality_postprocessors[modality](emb)
        if clips:
            emb = emb.unflatten(0, (b, s))
            if normalize:
                emb = emb.mean(dim=1)
        return emb

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{modality: input}`` -> ``{modality: embedding (B, E)}``; modalities are independent."""
        return {m: self.encode(m, x) for m, x in inputs.items()}
