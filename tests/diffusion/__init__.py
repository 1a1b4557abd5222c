"""lvmm.diffusion."""
