"""Size configurations of the ImageBind model.

Field names are those of the official ``ImageBindModel`` constructor, so a dict of official
constructor arguments (for instance the ``constructor_args`` of the shared tiny test vectors) is a
valid configuration as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

MODALITIES = ("vision", "text", "audio", "depth", "thermal", "imu")


@dataclass(frozen=True)
class ImageBindConfig:
    """Every size of the model; the defaults are those of ``imagebind_huge``."""

    video_frames: int = 2
    kernel_size: tuple[int, int, int] = (2, 14, 14)
    out_embed_dim: int = 1024
    # vision
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    # text
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    # audio
    audio_kernel_size: int = 16
    audio_stride: int = 10
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    audio_num_mel_bins: int = 128
    audio_target_len: int = 204
    audio_drop_path: float = 0.1
    # depth
    depth_embed_dim: int = 384
    depth_kernel_size: int = 16
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    depth_drop_path: float = 0.0
    # thermal
    thermal_embed_dim: int = 768
    thermal_kernel_size: int = 16
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    thermal_drop_path: float = 0.0
    # imu
    imu_embed_dim: int = 512
    imu_kernel_size: int = 8
    imu_num_blocks: int = 6
    imu_num_heads: int = 8
    imu_drop_path: float = 0.7
    # Fixed by the official code rather than by its constructor; kept here so that tests can vary them.
    image_size: int = 224
    text_context_length: int = 77
    text_vocab_size: int = 49408
    imu_channels: int = 6
    imu_samples: int = 2000

    def __post_init__(self):
        object.__setattr__(self, "kernel_size", tuple(int(k) for k in self.kernel_size))
        for m in MODALITIES:
            dim, heads = getattr(self, f"{m}_embed_dim"), getattr(self, f"{m}_num_heads")
            if dim % heads:
                raise ValueError(f"ImageBind config: {m}_embed_dim={dim} is not divisible by {m}_num_heads={heads}")

    def to_dict(self) -> dict:
        """JSON-friendly dict of the fields (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["kernel_size"] = list(self.kernel_size)
        return d


HUGE = ImageBindConfig()

# The configuration of the shared compatibility vectors (``tiny_config.json``). The text width is 8
# only to keep the 49408-row token embedding small.
TINY = ImageBindConfig(
    out_embed_dim=32,
    vision_embed_dim=64,
    vision_num_blocks=2,
    vision_num_heads=4,
    text_embed_dim=8,
    text_num_blocks=2,
    text_num_heads=2,
    audio_embed_dim=64,
    audio_num_blocks=2,
    audio_num_heads=4,
    depth_embed_dim=32,
    depth_num_blocks=1,
    depth_num_heads=4,
    thermal_embed_dim=32,
    thermal_num_blocks=1,
    thermal_num_heads=4,
    imu_embed_dim=32,
    imu_num_blocks=1,
    imu_num_heads=4,
)

PRESETS = {"huge": HUGE, "tiny": TINY}


def resolve_config(config: str | Mapping | ImageBindConfig) -> ImageBindConfig:
    """Return the :class:`ImageBindConfig` named by ``config``.

    ``config`` is a preset name (``"huge"``, ``"tiny"``), an :class:`ImageBindConfig`, or a dict of
    fields that override the *huge* sizes (a dict may name a preset as ``"base"``). Unknown keys are
    an error, so that a typo cannot silently build the wrong model.
    """
    if isinstance(config, ImageBindConfig):
        return config
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown ImageBind config {config!r}; choose one of {sorted(PRESETS)} or pass a dict")
        return PRESETS[config]
    if isinstance(config, Mapping):
        overrides = dict(config)
        base = resolve_config(overrides.pop("base", "huge"))
        names = {f.name for f in dataclasses.fields(ImageBindConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown ImageBind config keys {unknown}; valid keys: {sorted(names)}")
        return dataclasses.replace(base, **overrides)
    raise TypeError(
        f"ImageBind config must be a preset name, a dict or an ImageBindConfig, not {type(config).__name__}"
    )
