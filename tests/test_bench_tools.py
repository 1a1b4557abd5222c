"""The benches' shapes come from the named configs, and their in-process Animator runs a whole animation."""

import importlib.util
import sys

import numpy as np
import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "tools/bench/common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize(
    "stage1, stage2, frame, latent, k",
    [
        ("tiny", "tiny", (64, 64), (8, 8), 8),
        ("mug", "mug_128", (128, 128), (8, 8), 39),  # the MUG configs make 8 x 8 latents, not 16 x 16
        ("base_512", "base_512", (512, 512), (16, 16), 8),
    ],
)
def test_shapes_follow_the_configs_and_their_bases(common, stage1, stage2, frame, latent, k):
    s = common.shapes(stage1, stage2)
    assert (s.frame, s.latent, s.num_frames) == (frame, latent, k)
    assert s.unet["class_path"] == "lvmm.nets.unet3d.UNet3D"


def test_in_process_animator_animates_a_long_clip_through_windows(common):
    from lvmm.animation import AnimationOptions

    animator = common.build_animator(common.shapes("tiny", "tiny"))
    photo = common.test_photo(96, 128)
    with common.PeakMemory() as mem:
        res = animator.animate(photo, [0], AnimationOptions(steps=1, total_frames=12, guidance_scale=3.0))[0]
    assert res.frames.shape == (12, 96, 128, 3) and res.frames.dtype == np.uint8
    assert res.metrics["windows"] > 1 and mem.bytes >= 0
