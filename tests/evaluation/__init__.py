"""lvmm.evaluation: metrics, feature networks, protocols, reports."""
