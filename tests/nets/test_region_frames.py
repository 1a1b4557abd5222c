"""MRAA's part frames U sqrt(S): a rotated part's motion is a rotation (the symmetric root could not say so)."""

from __future__ import annotations

import math

import torch

from lvmm.nets.region_predictor import heatmap_moments, region_motions, sqrtm_2x2


def _gaussian_heatmap(angle_deg: float, size: int = 32, sx: float = 0.25, sy: float = 0.08, centre=(0.1, -0.05)):
    """A normalised anisotropic Gaussian heatmap (1, 1, size, size) whose long axis is turned by ``angle_deg``."""
    from lvmm.warp import base_grid

    grid = base_grid(size, size, torch.device("cpu"), torch.float64)[0]  # (2, h, w): x, y
    t = math.radians(angle_deg)
    x, y = grid[0] - centre[0], grid[1] - centre[1]
    u, v = math.cos(t) * x + math.sin(t) * y, -math.sin(t) * x + math.cos(t) * y
    heat = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return (heat / heat.sum())[None, None]


def test_part_motion_of_a_rotated_part_is_the_rotation():
    """MRAA's U sqrt(S) frames: a part turned by 30 degrees moves by a 30-degree rotation about its centre."""
    from lvmm.nets.region_predictor import principal_frame_2x2

    m = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    frame = principal_frame_2x2(m)
    torch.testing.assert_close(frame @ frame.T, m)
    src, drv = heatmap_moments(_gaussian_heatmap(0.0)), heatmap_moments(_gaussian_heatmap(30.0))
    jac = (src.affine @ torch.linalg.inv(drv.affine))[0, 0]  # backward: a point of I_k to I_0
    t = math.radians(-30.0)
    rotation = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    torch.testing.assert_close(jac, rotation, atol=0.02, rtol=0)
    # the symmetric square root, used before, cannot express it
    sym = sqrtm_2x2(src.covar) @ torch.linalg.inv(sqrtm_2x2(drv.covar))
    assert (sym[0, 0] - rotation).abs().max() > 0.3
    # the dense part motion carries the turned part's points onto the original ones
    flow = region_motions(src, drv, torch.eye(2, 3, dtype=torch.float64)[None], (32, 32))[0, 1]  # (2, h, w)
    from lvmm.warp import base_grid

    grid = base_grid(32, 32, torch.device("cpu"), torch.float64)[0]
    c = drv.shift[0, 0]
    expected = torch.einsum("ij,jhw->ihw", rotation, grid - c[:, None, None]) + src.shift[0, 0][:, None, None] - grid
    torch.testing.assert_close(flow, expected, atol=0.02, rtol=0)


def test_principal_frame_gradients_are_finite_for_isotropic_and_axis_aligned_covariances():
    from lvmm.nets.region_predictor import principal_frame_2x2

    for m in (torch.eye(2), torch.diag(torch.tensor([1.0, 3.0])), torch.diag(torch.tensor([3.0, 1.0]))):
        m = m.clone().requires_grad_(True)
        frame = principal_frame_2x2(m)
        torch.testing.assert_close(frame @ frame.T, m.detach(), atol=1e-5, rtol=1e-5)
        frame.sum().backward()
        assert torch.isfinite(m.grad).all()
