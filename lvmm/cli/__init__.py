"""Command-line entry points (one module a tool: `lvmm.cli.<tool>.main`) and the helpers they share."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def parse_with_config_section(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    section: str,
    required: Sequence[str] = (),
    list_options: Sequence[str] = (),
) -> argparse.Namespace:
    """Parse ``argv``; when ``--config FILE`` is given, its ``section`` mapping supplies defaults that flags override.

    ``required`` options must come from a flag or the section; ``list_options`` take a single YAML string as a
    one-element list (for ``nargs="+"`` options). Unknown keys in the section are refused, naming the file.
    """
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        import yaml

        path = Path(args.config)
        if not path.is_file():
            raise SystemExit(f"error: {path}: config file not found")
        values = (yaml.safe_load(path.read_text()) or {}).get(section, {})
        defaults = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name == "config" or not hasattr(args, name):
                raise SystemExit(f"error: {path}: unknown option {key!r} in section {section!r}")
            defaults[name] = [value] if name in list_options and isinstance(value, str) else value
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    missing = [f"--{n}" for n in required if getattr(args, n) is None]
    if missing:
        parser.error(
            f"the following arguments are required (or a {section!r} section in --config): {', '.join(missing)}"
        )
    return args


def load_pipeline(args: argparse.Namespace):
    """The :class:`lvmm.pipeline.LVMMPipeline` of a command's ``--model`` folder or ``--ckpt`` (with
    ``--stage1-ckpt``); ``--imagebind``, ``--imagebind-config``, ``--dtype`` and ``--device`` where the command
    has them. A checkpoint, package or ImageBind setting that cannot be used exits with its message."""
    from lvmm.animation import AnimationError
    from lvmm.checkpoint import CheckpointError
    from lvmm.pipeline import DTYPES, LVMMPipeline

    dtype = DTYPES[args.dtype] if getattr(args, "dtype", None) else None
    imagebind_config = getattr(args, "imagebind_config", None)
    try:
        if args.model:
            return LVMMPipeline.from_pretrained(  # ok: a local package folder, never a hub
                args.model, args.device, dtype, args.imagebind, imagebind_config
            )
        return LVMMPipeline.from_checkpoints(
            args.ckpt, args.stage1_ckpt, args.imagebind, imagebind_config, args.device, dtype
        )
    except (CheckpointError, AnimationError, ValueError) as e:  # ValueError: an ImageBind config it cannot honour
        raise SystemExit(f"error: {e}") from None


def parse_size(text: str | int | None) -> tuple[int, int] | None:
    """A frame size option: ``N`` (square) or ``HxW`` (e.g. ``256x448``) -> ``(H, W)``; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", str(text).strip().lower())
    if not match:
        raise ValueError(f"cannot read a size from {text!r} (use HxW or N)")
    h = int(match.group(1))
    return h, int(match.group(2) or h)


def parse_int_list(text: str | int | None) -> list[int] | None:
    """A list of seeds: ``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``; None stays None.

    The one reader of the seed options (``lvmm-animate``, ``lvmm-generate``, ``lvmm-evaluate``, the app).
    Raises ValueError for text it cannot read, a range that runs backwards and text without a seed."""
    if text is None:
        return None
    values: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ValueError(f"cannot read seeds from {text!r} (use e.g. '0-3' or '0,5')") from None
        if last < first:
            raise ValueError(f"empty seed range {part!r} in {text!r}")
        values += range(first, last + 1)
    if not values:
        raise ValueError(f"no seeds in {text!r}")
    return values


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` (one of the readers above) as an argparse ``type``: its ValueError is the option's message."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__  # argparse names the type in some messages
    return convert


size_argument = argument_type(parse_size)
seeds_argument = argument_type(parse_int_list)
