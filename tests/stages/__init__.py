"""lvmm.stages: the training modules."""
