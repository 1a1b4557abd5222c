"""The command-line tools (lvmm.cli, tools/*.py) end to end."""
