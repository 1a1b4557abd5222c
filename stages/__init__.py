"""LightningModules of stage one (motion accretion) and stage two (motion diffusion)."""
