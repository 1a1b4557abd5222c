"""The motion measures the README and the demo report quote: wrap and pop ratios, motion kept, magnitude,
sharpness, and the family classifier behind the conditioning accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lvmm.evaluation.motion_metrics import (
    FamilyClassifier,
    mean_magnitude,
    motion_features,
    motion_kept,
    pop_ratio,
    sharpness,
    steps,
    wrap_ratio,
)


def frames(*values: float) -> torch.Tensor:
    """A sequence (T, 1, 2, 2) whose frame k is the constant ``values[k]``."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)


def test_steps_are_mean_absolute_differences_and_do_not_overflow_uint8():
    assert steps(frames(0, 1, 3, 2)).tolist() == [1.0, 2.0, 1.0]
    clip = np.array([[[0]], [[255]], [[0]]], dtype=np.uint8)  # uint8 subtraction would wrap around
    assert steps(clip).tolist() == [255.0, 255.0]


def test_wrap_ratio_is_one_for_a_seamless_cycle_zero_for_a_held_frame_and_large_for_a_jump():
    assert wrap_ratio(frames(0, 1, 2, 1)) == pytest.approx(1.0)  # last -> first is an ordinary step
    assert wrap_ratio(frames(0, 1, 2, 1, 0)) == pytest.approx(0.0)  # the first frame repeats at the end
    assert wrap_ratio(frames(0, 1, 2, 3)) == pytest.approx(3.0)  # a ramp jumps back by three steps
    with pytest.raises(ValueError, match="at least 3"):
        wrap_ratio(frames(0, 1))


def test_pop_ratio_compares_the_step_out_of_the_first_frame_with_the_later_ones():
    assert pop_ratio(frames(0, 1, 2, 3)) == pytest.approx(1.0)
    assert pop_ratio(frames(0, 5, 6, 7)) == pytest.approx(5.0)
    assert pop_ratio(frames(0, 0, 0, 0)) == 0.0  # a still clip: no division by a zero median
    with pytest.raises(ValueError, match="at least 3"):
        pop_ratio(frames(0, 1))


def test_magnitude_and_motion_kept_in_pixels():
    field = torch.zeros(4, 2, 3, 3)
    field[:, 0], field[:, 1] = 3.0, 4.0  # every vector is (3, 4): length 5
    assert mean_magnitude(field) == pytest.approx(5.0)
    assert motion_kept(field / 2, field) == pytest.approx(0.5)
    assert motion_kept(field, torch.zeros_like(field)) > 1e6  # guarded, not a division by zero


def test_sharpness_is_the_mean_gradient_of_the_luminance():
    flat = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert sharpness(flat) == 0.0
    ramp = np.broadcast_to(np.arange(8, dtype=np.uint8)[None, :, None], (8, 8, 3)).copy()  # +1 per column
    assert sharpness(ramp) == pytest.approx(1.0, abs=1e-5)  # luminance weights sum to 1
    assert sharpness(np.stack([flat, ramp])) == pytest.approx(0.5, abs=1e-5)  # a clip: the mean over frames


def _fields(family: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` sequences (n, 4, 2, 16, 16) of pixel fields: a translation ("shift") or a zoom about the centre."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    out = []
    for _ in range(n):
        amp = 1 + 2 * torch.rand((), generator=generator)
        phase = torch.rand((), generator=generator) * math.pi
        seq = []
        for t in range(4):
            s = amp * math.sin(phase + t)
            seq.append(torch.stack([xs * s, ys * s]) if family == "zoom" else torch.stack([torch.full_like(xs, s)] * 2))
        out.append(torch.stack(seq))
    return torch.stack(out) + 0.05 * torch.randn(n, 4, 2, 16, 16, generator=generator)


def test_family_classifier_separates_translation_from_zoom_on_held_out_fields():
    g = torch.Generator().manual_seed(0)
    train = torch.cat([_fields("shift", 20, g), _fields("zoom", 20, g)])
    labels = torch.tensor([0] * 20 + [1] * 20)
    test = torch.cat([_fields("shift", 10, g), _fields("zoom", 10, g)])
    test_labels = torch.tensor([0] * 10 + [1] * 10)
    classifier = FamilyClassifier(num_classes=2).fit(train, labels)
    assert classifier.predict(test).shape == (20,)
    assert classifier.accuracy(test, test_labels) >= 0.95
    # the features see what tells the families apart: divergence is large for a zoom, near zero for a shift
    div = motion_features(test)[:, 1]  # mean |mean divergence| over time
    assert div[10:].min() > div[:10].max()


def test_family_classifier_accuracy_is_chance_level_on_labels_it_cannot_see():
    g = torch.Generator().manual_seed(1)
    fields = _fields("shift", 40, g)
    labels = torch.tensor([0, 1] * 20)  # the same family under two labels
    classifier = FamilyClassifier(num_classes=2).fit(fields[:20], labels[:20])
    assert classifier.accuracy(fields[20:], labels[20:]) <= 0.8


def test_family_classifier_calls_invisible_motion_still_however_it_is_shaped():
    """A sample that barely moves is still: true still clips decode to zero motion, and the scale-free
    features (concentration, anisotropy) of a 0.02-px residue must not give it the shape of a family."""
    g = torch.Generator().manual_seed(2)
    still = torch.zeros(20, 4, 2, 16, 16)
    train = torch.cat([still, _fields("shift", 20, g), _fields("zoom", 20, g)])
    labels = torch.tensor([0] * 20 + [1] * 20 + [2] * 20)
    classifier = FamilyClassifier(num_classes=3).fit(train, labels)
    residue = _fields("shift", 10, g)  # a translation, scaled to 0.02 px of mean displacement: invisible
    residue = residue * (0.02 / residue.norm(dim=2).mean((1, 2, 3), keepdim=True)[..., None])
    assert mean_magnitude(residue) == pytest.approx(0.02, rel=1e-3)
    assert classifier.predict(residue).tolist() == [0] * 10
    # the floor fades the residue's scale-free features towards a still clip's zeros
    concentration, unfloored = motion_features(residue)[:, 5], motion_features(residue, floor=0.0)[:, 5]
    assert (concentration < 0.3 * unfloored).all()
    visible = _fields("shift", 10, g)  # the same motion at 1-3 px is recognised as it should be
    assert classifier.accuracy(visible, torch.ones(10)) >= 0.9
