"""Evaluation protocols: what a reported number was computed on.

A :class:`Protocol` fixes the size and length of the generated videos, how many frames of each clip
I3D sees, the feature networks' input sizes, and which reference samples count (the test split of the
dataset recipe). ``tools/evaluate.py`` prints the protocol beside every result.

The LFDM benchmark protocol (Ni et al., CVPR 2023), which LVMM follows on MUG, MHAD and NATOPS: one
video is generated per test video, from its first frame (and its class, where the model is
class-conditioned), at 128 x 128 with 40 frames; FVD compares the generated set with the real test
videos, 40 frames of each: frame 0 and 39 others drawn at random and sorted in time
(``reference_sampling="random_sorted"``, seeded by the sample's key, so every evaluation draws the
same frames), as LFDM samples its clips. FVD is computed per seed and reported as mean +- std over the
seeds, beside class- and subject-conditional FVD (:func:`lvmm.evaluation.video_metrics.grouped_fvd`). The
subject split lives in the dataset recipes; evaluation keeps the reference samples whose json says
``"split": "test"``, or whose ``subject`` is in a list given on the command line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

I3D_SIZE = 224  # FVD: frames resized to 224 x 224 (the I3D training size)
INCEPTION_SIZE = 299  # FID: frames resized to 299 x 299
TEST_SPLIT = "test"

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "keep_reference_sample", "ReferenceSelectionError"]


@dataclass(frozen=True)
class Protocol:
    """The fixed settings of one evaluation; ``None`` fields are taken from the data (custom runs).

    Attributes:
        name: short name (``mug``, ``mhad``, ``natops``, ``custom``).
        description: one line for reports.
        height, width: the size every generated video must have.
        num_frames: the length every generated video must have; reference clips are brought to it.
        fvd_frames: frames of each clip fed to I3D (the first ones); ``None`` = the whole clip.
        reference_split: keep reference samples of this split (json ``split``, or a subject list).
        subjects: the dataset recipe's subject split, for the record.
        i3d_size: I3D input size (224 in every published protocol).
        inception_size: Inception input size (299 in every published protocol).
        paired_from_frame: first frame index used by PSNR/SSIM/LPIPS; 1 skips the conditioning frame,
            which an animation reproduces exactly and which would inflate the scores.
        reference_sampling: how a longer reference clip is brought to ``num_frames``: ``"random_sorted"``
            (frame 0 and the rest at random, sorted, seeded by the key; LFDM) or ``"even"`` (evenly spaced).
    """

    name: str
    description: str
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    fvd_frames: int | None = None
    reference_split: str | None = None
    subjects: str | None = None
    i3d_size: int = I3D_SIZE
    inception_size: int = INCEPTION_SIZE
    paired_from_frame: int = 1
    reference_sampling: str = "even"

    def replace(self, **changes: Any) -> Protocol:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _lfdm(name: str, dataset: str, subjects: str) -> Protocol:
    return Protocol(
        name=name,
        description=(
            f"LFDM/LVMM protocol on {dataset}: one video per test video from its first frame, 128x128, 40 frames"
        ),
        height=128,
        width=128,
        num_frames=40,
        fvd_frames=None,
        reference_split=TEST_SPLIT,
        subjects=subjects,
        reference_sampling="random_sorted",
    )


PROTOCOLS: dict[str, Protocol] = {
    "mug": _lfdm("mug", "MUG facial expressions", "26 train / 26 test subjects"),
    "mhad": _lfdm("mhad", "UTD-MHAD actions", "4 train / 4 test subjects"),
    "natops": _lfdm("natops", "NATOPS aircraft-handling gestures", "10 train / 10 test subjects"),
    "custom": Protocol(
        name="custom", description="custom: size and length from --size/--frames or the generated videos"
    ),
}


def get_protocol(name: str) -> Protocol:
    """The protocol registered under ``name`` (case-insensitive)."""
    try:
        return PROTOCOLS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}") from None


class ReferenceSelectionError(ValueError):
    """A reference sample cannot be assigned to a split."""


def keep_reference_sample(
    meta: Mapping[str, Any], split: str | None, subjects: Iterable[str] | None, key: str = "?"
) -> bool:
    """Whether a reference sample (its json ``meta``) belongs to the evaluated set.

    A sample's ``split`` field, when present, must equal ``split``; when ``subjects`` are given, its
    ``subject`` must be one of them. A sample that the protocol wants split but that has neither a
    ``split`` field nor a subject list to decide by is an error, not a silent inclusion.
    """
    if split is None and subjects is None:
        return True
    keep, decided = True, False
    if split is not None and "split" in meta:
        keep, decided = str(meta["split"]) == split, True
    if subjects is not None:
        if "subject" not in meta:
            raise ReferenceSelectionError(f"reference sample {key}: no 'subject' in its json, cannot select by subject")
        keep, decided = keep and str(meta["subject"]) in {str(s) for s in subjects}, True
    if not decided:
        raise ReferenceSelectionError(
            f"reference sample {key}: its json has no 'split' field; pass the test subjects (--test-subjects) "
            f"or shards written from the {split!r} split"
        )
    return keep
