"""lvmm.nets."""
