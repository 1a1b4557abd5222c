"""Evaluation metrics: FVD (I3D), FID on frames (Inception-v3), LPIPS, PSNR and SSIM.

The feature networks are our own modules whose ``state_dict`` layouts match public checkpoints; they
load those weights from local paths only (see ``docs/evaluation.md`` for where to obtain them).
``tools/evaluate.py`` runs the whole protocol over a folder of generated videos and reference shards.
"""

from lvmm.metrics.frechet import FeatureStatistics, frechet_distance, trace_sqrt_product
from lvmm.metrics.i3d import InceptionI3d, load_i3d
from lvmm.metrics.image import psnr, ssim
from lvmm.metrics.inception import FIDInceptionV3, load_fid_inception
from lvmm.metrics.lpips import LPIPS, load_lpips
from lvmm.metrics.protocols import PROTOCOLS, Protocol, get_protocol
from lvmm.metrics.video_metrics import InsufficientVideosError, VideoSetFeatures, fid, fvd, i3d_features, paired_scores

__all__ = [
    "FeatureStatistics",
    "frechet_distance",
    "trace_sqrt_product",
    "InceptionI3d",
    "load_i3d",
    "FIDInceptionV3",
    "load_fid_inception",
    "LPIPS",
    "load_lpips",
    "psnr",
    "ssim",
    "PROTOCOLS",
    "Protocol",
    "get_protocol",
    "InsufficientVideosError",
    "VideoSetFeatures",
    "fid",
    "fvd",
    "i3d_features",
    "paired_scores",
]
