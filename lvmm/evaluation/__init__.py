"""Evaluation of trained models (reusable by tools and the demo report)."""
