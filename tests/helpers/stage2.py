"""Shared helpers of the stage-two tests: tiny networks, tiny latent shards, an exact Gaussian denoiser."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lvmm.diffusion.schedules import DiffusionConfig
from lvmm.nets.unet3d import UNet3D

TINY_UNET = dict(
    in_channels=4,
    model_channels=8,
    channel_mult=(1, 2, 2, 2),
    downsample=(True, True, False, False),
    attention=(True, True, True, True),
    num_res_blocks=1,
    head_dim=8,
    cond_dim=16,
    max_frames=8,
    frame_features=2,
    groups=4,
)


def tiny_unet(seed: int = 0, randomise: bool = True, **overrides) -> UNet3D:
    """A small U-Net; ``randomise`` replaces the zero initialisations so every path affects the output."""
    torch.manual_seed(seed)
    net = UNet3D(**{**TINY_UNET, **overrides})
    if randomise:
        with torch.no_grad():
            for p in net.parameters():
                if p.abs().sum() == 0:
                    p.normal_(0, 0.1)
    return net.eval()


def unet_inputs(batch: int = 2, frames: int = 4, size: int = 8, cond_dim: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(batch, 4, frames, size, size, generator=g),
        "t": torch.randint(0, 1000, (batch,), generator=g),
        "z0": torch.randn(batch, 4, size, size, generator=g),
        "tokens": torch.randn(batch, 2, cond_dim, generator=g),
        "token_mask": torch.ones(batch, 2, dtype=torch.bool),
    }


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def write_latent_shards(
    root: Path,
    shards: int = 2,
    per_shard: int = 5,
    clip_frames: int = 9,
    size: int = 8,
    dim: int = 16,
    image_size: int = 32,
    audio: bool = False,
    amounts: bool = False,
) -> list[str]:
    """Tiny latent motion shards in the format of docs/data-formats.md; every third clip has no text, with
    ``audio`` every even clip has an audio embedding, and with ``amounts`` clip n's json has the
    ``frame_amounts`` n + 0.1 k, k = 1..K."""
    import webdataset as wds

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        path = root / f"latents-{s:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i in range(per_shard):
                n = s * per_shard + i
                sample = {
                    "__key__": f"clip{n:04d}",
                    "motion.npy": _npy_bytes(rng.standard_normal((clip_frames, 4, size, size)).astype(np.float16)),
                    "img_emb.npy": _npy_bytes(rng.standard_normal(dim).astype(np.float32)),
                    "first.png": _png_bytes(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)),
                    "json": json.dumps(
                        {
                            "source": f"video{n}",
                            "frames": list(range(clip_frames)),
                            "recon_error": 1.0,
                            "label": n % 6,
                            "caption": "" if n % 3 == 0 else "x",
                            **({"frame_amounts": [n + 0.1 * k for k in range(1, clip_frames)]} if amounts else {}),
                        }
                    ).encode(),
                }
                if n % 3:
                    sample["txt_emb.npy"] = _npy_bytes(rng.standard_normal(dim).astype(np.float32))
                if audio and n % 2 == 0:
                    sample["aud_emb.npy"] = _npy_bytes(rng.standard_normal(dim).astype(np.float32))
                sink.write(sample)
        paths.append(str(path))
    return paths


class GaussianDenoiser:
    """The exact denoiser for data x0 ~ N(mean, std^2) per element, in any prediction type.

    With x_t = a x0 + s eps: x_t ~ N(a m, a^2 v + s^2), and E[eps | x_t] = s (x_t - a m) / (a^2 v + s^2).
    """

    def __init__(self, config: DiffusionConfig, mean: float, std: float):
        from lvmm.diffusion.schedules import Diffusion

        self.diffusion, self.mean, self.var = Diffusion(config, min_snr_gamma=None), mean, std**2
        self.kind = config.prediction_type

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        a, s = self.diffusion.alpha_sigma(t, x)
        a, s = a.double(), s.double()
        eps = s * (x.double() - a * self.mean) / (a**2 * self.var + s**2)
        x0 = (x.double() - s * eps) / a
        out = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[self.kind]
        return out.to(x.dtype)
