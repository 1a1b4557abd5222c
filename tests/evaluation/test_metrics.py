"""Metrics: the Fréchet distance against closed forms and scipy, the feature networks' key layouts and
loading errors, and FVD/FID/LPIPS/PSNR/SSIM behaviour with seeded random weights (the numbers mean
nothing; the code paths are the real ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvmm.checkpoint import CheckpointError
from lvmm.evaluation.frame_metrics import PSNR_MAX_DB, psnr, ssim
from lvmm.evaluation.frechet import FeatureStatistics, frechet_distance, trace_sqrt_product
from lvmm.evaluation.i3d import InceptionI3d, load_i3d
from lvmm.evaluation.inception import FIDInceptionV3, load_fid_inception
from lvmm.evaluation.lpips import load_lpips
from lvmm.evaluation.video_metrics import InsufficientVideosError, VideoSetFeatures, fid, fvd, i3d_features, i3d_input
from tests.helpers.metrics import TEST_INCEPTION_SIZE, make_weight_files, smooth_videos

TEST_I3D_SIZE = 32  # the protocol's 224 is covered by one test; 32 keeps the rest fast on CPU


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_weight_files(tmp_path_factory.mktemp("metric_weights"))


def random_spd(dim: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(dim, rank or dim))
    return a @ a.T / (rank or dim) + (0 if rank else 0.1 * np.eye(dim))


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The textbook route (pytorch-fid's): scipy's sqrtm of S1 S2, with an eps offset when it fails."""
    from scipy import linalg

    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_closed_form_commuting_covariances():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: d^2 = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(0)
    dim = 16
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a, b = rng.uniform(0.1, 4, dim), rng.uniform(0.1, 4, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_frechet_closed_form_non_commuting_2x2():
    # For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M ~ S1 S2: tr = tr(S1 S2), det = det S1 det S2.
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 3.0]])
    tr_sqrt = np.sqrt(np.trace(s1 @ s2) + 2 * np.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
    assert trace_sqrt_product(s1, s2) == pytest.approx(tr_sqrt, rel=1e-12)
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rank", [None, 12])
def test_frechet_matches_scipy(rank):
    # Full rank, and the rank-deficient case of real FVD (fewer videos than feature dimensions).
    rng = np.random.default_rng(1)
    dim = 48
    s1, s2 = random_spd(dim, rng, rank), random_spd(dim, rng, rank)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-6 if rank is None else 1e-4)


def test_feature_statistics_match_numpy_and_ignore_batching():
    rng = np.random.default_rng(2)
    feats = rng.normal(loc=1000.0, scale=2.0, size=(37, 8))  # a large mean tests the shifted sums
    whole = FeatureStatistics.from_features(feats)
    np.testing.assert_allclose(whole.mean.numpy(), feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(whole.covariance.numpy(), np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-12)
    pieces = FeatureStatistics(8)
    for chunk in np.array_split(feats, [1, 5, 6, 20]):
        pieces.update(chunk)
    np.testing.assert_allclose(pieces.covariance.numpy(), whole.covariance.numpy(), rtol=1e-12, atol=1e-12)
    assert frechet_distance(whole, pieces) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        _ = FeatureStatistics.from_features(feats[:1]).covariance
    with pytest.raises(ValueError, match="NaN"):
        FeatureStatistics(8).update(np.full((2, 8), np.nan))


@pytest.mark.parametrize("counts", [(10, 7), (10, 100), (100, 10), (100, 120)])
def test_frechet_low_rank_route_matches_matrix_route(counts):
    # Statistics of fewer vectors than dimensions use their data factors; the result must not change.
    rng = np.random.default_rng(3)
    dim = 48
    a = rng.normal(size=(counts[0], dim)) * rng.uniform(0.5, 2, dim)
    b = rng.normal(loc=0.3, size=(counts[1], dim))
    sa, sb = FeatureStatistics.from_features(a), FeatureStatistics.from_features(b)
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    # The matrix route takes square roots of rounding-level eigenvalues of singular covariances
    # (about D * sqrt(1e-16) absolute error); the factor route has no such term.
    assert frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(sb, sa) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------- key layouts


def test_i3d_key_layout_is_pytorch_i3d():
    model = InceptionI3d()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 12_697_264  # the port's parameter count
    assert len(state) == 344
    assert tuple(state["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(state["Mixed_4b.b1b.conv3d.weight"].shape) == (208, 96, 3, 3, 3)
    assert tuple(state["Mixed_5c.b3b.bn.running_var"].shape) == (128,)
    assert tuple(state["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1)
    assert tuple(state["logits.conv3d.bias"].shape) == (400,)


def test_fid_inception_key_layout_is_torchvision_inception3():
    import torchvision

    ours = {k: tuple(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    assert ours == {k: tuple(v.shape) for k, v in tv.state_dict().items()}


# ------------------------------------------------------------------------------- loading errors


def test_weights_missing_mismatched_and_hashed(tmp_path, weights):
    with pytest.raises(CheckpointError, match=r"nowhere\.pt: I3D \(FVD\) weights not found.*i3d_pretrained_400"):
        load_i3d(tmp_path / "nowhere.pt")
    state = torch.load(weights["i3d"], weights_only=True)
    state.pop("Mixed_4c.b0.conv3d.weight")
    state["logits.conv3d.bias"] = torch.zeros(101)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(
        CheckpointError,
        match=r"broken\.pt.*missing keys.*Mixed_4c\.b0\.conv3d\.weight.*logits\.conv3d\.bias: checkpoint \(101,\)",
    ):
        load_i3d(tmp_path / "broken.pt")
    # A torch.hub-style name carries its sha256 prefix, which is then checked.
    named = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    named.write_bytes(open(weights["inception"], "rb").read())
    with pytest.raises(CheckpointError, match="sha256 mismatch.*6726825d"):
        load_fid_inception(named)
    # Pickled objects are refused by weights_only loading.
    torch.save({"model": InceptionI3d}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_i3d(tmp_path / "pickled.pt")


def test_weights_load_from_safetensors(tmp_path, weights):
    from safetensors.torch import save_file

    state = torch.load(weights["i3d"], weights_only=True)
    save_file(state, str(tmp_path / "i3d.safetensors"))
    a, b = load_i3d(weights["i3d"]), load_i3d(tmp_path / "i3d.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


# ------------------------------------------------------------------------------------------- FVD


def test_i3d_input_preprocessing():
    videos = np.zeros((2, 3, 40, 80, 3), np.uint8)
    videos[..., 20:60, :] = 255  # the centre 40 columns: what the centre crop keeps
    x = i3d_input(videos, size=32)
    assert x.shape == (2, 3, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[..., 2:-2, 2:-2], torch.ones(1)), "the centre crop of a wide video keeps its middle"


def test_i3d_at_protocol_size(weights):
    model = load_i3d(weights["i3d"])
    feats = i3d_features(model, smooth_videos(1, 9, 32, seed=0), batch_size=1)  # 9 frames: the shortest 2-frame pooling
    assert feats.shape == (1, 400) and feats.dtype == np.float64 and np.isfinite(feats).all()


def test_fvd_identical_shifted_and_batch_size(weights):
    model = load_i3d(weights["i3d"])
    videos = smooth_videos(3, 9, 32, seed=1)
    shifted = np.clip(videos.astype(int) + 60, 0, 255).astype(np.uint8)
    feats = {bs: i3d_features(model, videos, batch_size=bs, size=TEST_I3D_SIZE) for bs in (1, 2)}
    feats[3] = feats.pop(2)
    np.testing.assert_allclose(feats[1], feats[3], rtol=1e-4, atol=1e-4)
    same = fvd(feats[1], feats[3])
    assert abs(same) < 1e-3 * max(1.0, float(np.abs(feats[1]).mean()))
    different = fvd(i3d_features(model, shifted, size=TEST_I3D_SIZE), feats[1])
    assert different > 100 * max(abs(same), 1e-6)
    assert fvd(feats[1], feats[3]) == pytest.approx(fvd(feats[3], feats[1]), abs=1e-6)


def test_fvd_refuses_a_single_video(weights):
    feats = np.ones((1, 400))
    with pytest.raises(InsufficientVideosError, match="at least 2 generated videos"):
        fvd(feats, np.ones((3, 400)))


# ------------------------------------------------------------------------------------------- FID


def test_fid_on_frames_identical_shifted_and_batch_size(weights):
    model = load_fid_inception(weights["inception"], input_size=TEST_INCEPTION_SIZE)
    videos = smooth_videos(2, 4, 24, seed=2)
    stats = {}
    for bs in (3, 8):
        features = VideoSetFeatures(inception=model, frame_batch_size=bs)
        for v in videos:
            features.add(v)
        stats[bs] = features.finish()["frames"]
    assert stats[3].count == 8
    assert abs(fid(stats[3], stats[8])) < 1e-3
    shifted = VideoSetFeatures(inception=model)
    for v in videos:
        shifted.add(255 - v)
    assert fid(shifted.finish()["frames"], stats[3]) > 1e-2


# ------------------------------------------------------------------------------ LPIPS, PSNR, SSIM


def test_lpips_from_files(weights):
    model = load_lpips(weights["lpips_backbone"], weights["lpips_linear"])
    x = torch.from_numpy(smooth_videos(1, 3, 64, seed=3)[0]).permute(0, 3, 1, 2).float() / 255
    y = x.flip(-1)
    with torch.inference_mode():
        assert torch.allclose(model(x, x), torch.zeros(3), atol=1e-7)
        d = model(x, y)
        assert d.shape == (3,) and (d > 0).all()
        assert torch.allclose(d, model(y, x), rtol=1e-5)
        assert (model(x, (x + 0.02).clamp(0, 1)) < d).all(), "a small change is closer than a mirror image"


def test_psnr_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(4)
    a = rng.uniform(size=(2, 3, 32, 40)).astype(np.float32)
    b = np.clip(a + rng.normal(scale=0.05, size=a.shape), 0, 1).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for i in range(2):
        ref_psnr = peak_signal_noise_ratio(a[i], b[i], data_range=1.0)
        ref_ssim = structural_similarity(
            a[i], b[i], data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert float(psnr(ta, tb)[i]) == pytest.approx(ref_psnr, rel=1e-4)
        assert float(ssim(ta, tb)[i]) == pytest.approx(ref_ssim, abs=2e-3)
    assert float(psnr(ta, ta)[0]) == PSNR_MAX_DB
    assert torch.allclose(ssim(ta, ta), torch.ones(2), atol=1e-4)
