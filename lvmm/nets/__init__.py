"""Networks: one file per network, no diffusion or training logic inside."""
