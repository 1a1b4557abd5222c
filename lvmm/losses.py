"""Losses of stage one: reconstruction, photometric, smoothness, equivariance, field auto-encoding, teacher.

Everything here is a plain function or a parameter-free (or frozen) module, so the LightningModule
only weighs and sums. Images are (B, 3, H, W) in [0, 1]; fields follow :mod:`lvmm.warp`.
"""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lvmm.checkpoint import check_state_dict, read_state_dict
from lvmm.evaluation.frame_metrics import fitting_window
from lvmm.nets.region_predictor import sqrtm_2x2
from lvmm.warp import base_grid, forward_differences, normalised_to_pixels, pixels_to_normalised, resize_field, warp

SSIM_WINDOW = 5  # the loss's window, smaller than the evaluation's 11: it acts on every scale of the pyramid
"""SSIM window of the fallback reconstruction loss: small, because tiny frames are 64 px wide."""
SMOOTHNESS_EDGE_WEIGHT = 10.0
"""Edge-aware smoothness: the penalty on field gradients is scaled by exp(-this * |grad I|)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x if factor == 1 else F.avg_pool2d(x, factor)


# ----------------------------------------------------------------------------------------- reconstruction
# torchvision's vgg19().features: conv widths, "M" = max-pool; the layout (and the state-dict keys
# "0.weight", "2.weight", ...) is torchvision's, so its weights load without renaming.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG19_TAPS = (1, 6, 11, 20, 29)
"""Indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in the feature stack (the usual perceptual taps)."""


class VGG19Features(nn.Sequential):
    """VGG19's convolutional stack in torchvision's layout, returning the activations at ``VGG19_TAPS``."""

    def __init__(self):
        layers, c = [], 3
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
                c = v
        super().__init__(*layers)

    @classmethod
    def from_file(cls, path: str | Path) -> VGG19Features:
        """Load weights saved as a state dict of ``vgg19().features`` (keys ``0.weight``, ...) or of the whole
        ``vgg19()`` (keys ``features.0.weight``, ...; the classifier is ignored). Nothing is downloaded."""
        net = cls()
        state = read_state_dict(path, "VGG19", "pass the local path of torchvision's vgg19 weights")
        if any(k.startswith("features.") for k in state):
            state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        check_state_dict(net, state, f"VGG19 weights {path}")
        net.load_state_dict(state)
        return net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i in VGG19_TAPS:
                taps.append(x)
            if i >= VGG19_TAPS[-1]:
                break
        return taps


class ReconstructionLoss(nn.Module):
    """L1 plus a multi-scale term: VGG19 perceptual when weights are given, else multi-scale L1 + SSIM.

    Args:
        vgg19_weights: local path of VGG19 weights (see :meth:`VGG19Features.from_file`), or None for the
            documented fallback, which needs no weights.
        scales: down-sampling factors of the multi-scale term.
    """

    def __init__(self, vgg19_weights: str | None = None, scales: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.scales = tuple(scales)
        self.vgg = VGG19Features.from_file(vgg19_weights) if vgg19_weights else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(pred, target)
        for s in self.scales:
            p, t = downsample(pred, s), downsample(target, s)
            if self.vgg is not None:
                fp, ft = self.vgg((p - self.mean) / self.std), self.vgg((t - self.mean) / self.std)
                loss = loss + sum(F.l1_loss(a, b) for a, b in zip(fp, ft)) / len(fp)
            else:
                window = fitting_window(p.shape, SSIM_WINDOW)
                loss = loss + F.l1_loss(p, t) + kornia.losses.ssim_loss(p, t, window)
        return loss


# ----------------------------------------------------------------------------------------- flow
def photometric_loss(
    img0: torch.Tensor, imgk: torch.Tensor, displacement: torch.Tensor, scales=(1, 2, 4)
) -> torch.Tensor:
    """Mean L1 of warp(I_0, d) against I_k on an image pyramid (the coarse levels keep gradients alive
    where the motion exceeds a pixel of the fine level)."""
    return sum(F.l1_loss(warp(downsample(img0, s), displacement), downsample(imgk, s)) for s in scales) / len(scales)


def edge_aware_smoothness(displacement: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """First-order smoothness of d (in pixels of its grid), relaxed across edges of ``image``."""
    h, w = displacement.shape[-2:]
    d = normalised_to_pixels(displacement, h, w)
    img = F.interpolate(image, size=(h, w), mode="area")
    dx_d, dy_d = forward_differences(d, pad=False)
    dx_i, dy_i = (g.abs().mean(1, keepdim=True) for g in forward_differences(img, pad=False))
    return (dx_d.abs() * torch.exp(-SMOOTHNESS_EDGE_WEIGHT * dx_i)).mean() + (
        dy_d.abs() * torch.exp(-SMOOTHNESS_EDGE_WEIGHT * dy_i)
    ).mean()


def field_reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, displacement_scale: float, scales=(1, 2, 4)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, multi-scale gradient consistency) between fields (B, 3, h, w); displacements are compared
    after multiplying by ``displacement_scale`` so they weigh like w."""
    gain = pred.new_tensor([displacement_scale, displacement_scale, 1.0]).view(1, 3, 1, 1)
    p, t = pred * gain, target * gain
    l1 = F.l1_loss(p, t)
    grad = 0.0
    for s in scales:
        gp = kornia.filters.spatial_gradient(downsample(p, s), normalized=True)  # (B, 3, 2, h, w)
        gt = kornia.filters.spatial_gradient(downsample(t, s), normalized=True)
        grad = grad + F.l1_loss(gp, gt) * s  # per-pixel gradients at scale s span s field pixels
    return l1, grad / len(scales)


# ----------------------------------------------------------------------------------------- equivariance
class RandomTransform:
    """A random smooth warp T of the normalised plane (affine + thin-plate spline), MRAA's equivariance recipe.

    ``transform_frame(img)`` samples ``img`` at ``T(x)``, so a region at x in the transformed frame sits at
    T(x) in the original one. ``sigma_affine = sigma_tps = 0`` is the identity.
    """

    def __init__(
        self,
        batch: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        device=None,
        dtype=torch.float32,
        generator: torch.Generator | None = None,
    ):
        def noise(*shape):
            return torch.randn(*shape, generator=generator, device=device, dtype=dtype)

        self.theta = torch.eye(2, 3, device=device, dtype=dtype) + sigma_affine * noise(batch, 2, 3)  # (B, 2, 3)
        ctrl = base_grid(points_tps, points_tps, device, dtype).flatten(2).transpose(1, 2)  # (1, N, 2)
        self.control = ctrl
        self.control_weights = sigma_tps * noise(batch, ctrl.shape[1], 2)  # (B, N, 2)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, ..., 2) -> T(points) (B, ..., 2)."""
        shape = points.shape
        x = points.reshape(shape[0], -1, 2)  # (B, N, 2)
        out = x @ self.theta[:, :, :2].transpose(1, 2) + self.theta[:, None, :, 2]
        r2 = ((x[:, :, None] - self.control[:, None]) ** 2).sum(-1)  # (B, N, M)
        u = r2 * torch.log(r2 + 1e-6)  # TPS kernel r^2 log r^2
        out = out + u @ self.control_weights
        return out.reshape(shape)

    def jacobian(self, points: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """dT/dx at points (B, K, 2) -> (B, K, 2, 2), by central differences."""
        cols = []
        for i in range(2):
            step = torch.zeros(2, device=points.device, dtype=points.dtype)
            step[i] = eps
            cols.append((self(points + step) - self(points - step)) / (2 * eps))
        return torch.stack(cols, -1)

    def transform_frame(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        grid = self(base_grid(h, w, image.device, image.dtype).permute(0, 2, 3, 1).expand(b, -1, -1, -1))
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def equivariance_loss(region_predictor, image: torch.Tensor, transform: RandomTransform, regions=None) -> torch.Tensor:
    """MRAA's equivariance on regions: the regions of T(I), mapped through T, must be the regions of I.

    Shifts must satisfy s_I = T(s_TI) and covariances Sigma_I = J Sigma_TI J^T (J = dT at s_TI); the loss is
    zero for the identity transform. ``regions`` (of ``image``) may be passed to reuse a forward pass.
    """
    regions = regions if regions is not None else region_predictor(image)
    moved = region_predictor(transform.transform_frame(image))
    shift = transform(moved.shift)  # (B, K, 2)
    jac = transform.jacobian(moved.shift)  # (B, K, 2, 2)
    # compare the frames (square roots of covariances): lengths, like the shifts, so the terms weigh alike
    affine = sqrtm_2x2(jac @ moved.covar @ jac.transpose(-1, -2))
    return F.l1_loss(shift, regions.shift) + F.l1_loss(affine, sqrtm_2x2(regions.covar))


# ----------------------------------------------------------------------------------------- teacher
def lucas_kanade_teacher(img0: torch.Tensor, imgk: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """scikit-image's iterative Lucas-Kanade flow (``optical_flow_ilk``) as a target field (B, 2, H, W) in
    normalised units and our backward convention I_k(x) = I_0(x + d(x)). CPU, about 15 ms per 64x64 pair."""
    from skimage.registration import optical_flow_ilk

    grey0 = (img0.detach().float().mean(1)).cpu().numpy()
    greyk = (imgk.detach().float().mean(1)).cpu().numpy()
    flows = []
    for a, b in zip(grey0, greyk):
        # reference I_k, moving I_0: I_k(r, c) ~ I_0(r + v, c + u), i.e. exactly our d = (u, v)
        v, u = optical_flow_ilk(b, a, radius=radius)
        flows.append(np.stack([u, v]))
    h, w = img0.shape[-2:]
    return pixels_to_normalised(torch.from_numpy(np.stack(flows)).to(img0), h, w)


def teacher_loss(displacement: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L1 in pixels of the frame between d (any size) and the teacher's full-size field."""
    h, w = teacher.shape[-2:]
    return normalised_to_pixels(resize_field(displacement, (h, w)) - teacher, h, w).abs().mean()
