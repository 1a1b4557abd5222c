"""lvmm.imagebind."""
