"""The option readers every command shares (lvmm.cli): one implementation of the seed list and the size."""

from __future__ import annotations

import argparse

import pytest

from lvmm.cli import parse_int_list, parse_size, seeds_argument, size_argument
from lvmm.cli.animate import build_parser


@pytest.mark.parametrize(
    "text,seeds",
    [("0-3", [0, 1, 2, 3]), ("1,5,7", [1, 5, 7]), ("4", [4]), (" 0-1, 7 ,", [0, 1, 7]), (3, [3]), (None, None)],
)
def test_seed_lists(text, seeds):
    assert parse_int_list(text) == seeds


@pytest.mark.parametrize(
    "text,message", [("a", "cannot read"), ("3-1", "empty seed range"), ("", "no seeds"), (",", "no seeds")]
)
def test_bad_seed_lists_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_int_list(text)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        seeds_argument(text)


def test_animate_reads_seeds_with_the_shared_reader(capsys):
    args = build_parser().parse_args(["--image", "x.png", "--ckpt", "c.ckpt", "--seeds", "2-4,9"])
    assert args.seeds == [2, 3, 4, 9]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--image", "x.png", "--ckpt", "c.ckpt", "--seeds", "5-2"])
    assert "empty seed range '5-2'" in capsys.readouterr().err


def test_sizes():
    assert parse_size("256x448") == (256, 448) and parse_size(64) == (64, 64) and parse_size(None) is None
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read a size"):
        size_argument("64y")
