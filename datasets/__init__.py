"""Shard writing and reading, dataset recipes and the built-in procedural motion data."""
