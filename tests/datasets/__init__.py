"""lvmm.datasets: shard writing and reading, recipes, drills."""
