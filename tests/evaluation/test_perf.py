"""The benches' shapes come from the named configs, and their in-process Animator runs a whole animation."""

import numpy as np
import pytest

from lvmm.evaluation import perf


@pytest.mark.parametrize(
    "stage1, stage2, frame, latent, k",
    [
        ("tiny", "tiny", (64, 64), (8, 8), 8),
        ("mug", "mug_128", (128, 128), (8, 8), 39),  # the MUG configs make 8 x 8 latents, not 16 x 16
        ("base_512", "base_512", (512, 512), (16, 16), 8),
    ],
)
def test_shapes_follow_the_configs_and_their_bases(stage1, stage2, frame, latent, k):
    s = perf.shapes(stage1, stage2)
    assert (s.frame, s.latent, s.num_frames) == (frame, latent, k)
    assert s.unet["class_path"] == "lvmm.nets.unet3d.UNet3D"


def test_in_process_animator_animates_a_long_clip_through_windows():
    from lvmm.animation import AnimationOptions

    animator = perf.build_animator(perf.shapes("tiny", "tiny"))
    photo = perf.test_photo(96, 128)
    with perf.PeakMemory() as mem:
        res = animator.animate(photo, [0], AnimationOptions(steps=1, total_frames=12, guidance_scale=3.0))[0]
    assert res.frames.shape == (12, 96, 128, 3) and res.frames.dtype == np.uint8
    assert res.metrics["windows"] > 1 and mem.bytes >= 0
