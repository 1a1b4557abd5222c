"""Helpers shared by the tests: tiny networks and checkpoints, shards, videos and bad files."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: configs/, tools/
TESTS = ROOT / "tests"
