"""Evaluation: every measure the README and the reports quote, and the protocols that combine them.

Where to look:

- :mod:`~lvmm.evaluation.frame_metrics`: PSNR and SSIM of frame pairs (the one implementation and its cap).
- :mod:`~lvmm.evaluation.frechet`: Fréchet distance of feature statistics (FVD, FID).
- :mod:`~lvmm.evaluation.i3d`, :mod:`~lvmm.evaluation.inception`, :mod:`~lvmm.evaluation.lpips`: the feature
  networks, our own modules whose ``state_dict`` layouts match public checkpoints; they load those weights
  from local paths only (:mod:`~lvmm.evaluation.weights`, and ``docs/evaluation.md`` for where to get them).
- :mod:`~lvmm.evaluation.video_metrics`: FVD, FID, paired PSNR/SSIM/LPIPS over sets of videos.
- :mod:`~lvmm.evaluation.protocols`: the benchmark protocols (sizes, lengths, test splits).
- :mod:`~lvmm.evaluation.benchmark`: a whole protocol over generated videos and reference shards
  (``lvmm-evaluate``), and its report (metrics.json, metrics.md).
- :mod:`~lvmm.evaluation.stage_one`: stage one's rendered frames against baselines (``lvmm-eval-stage1``).
- :mod:`~lvmm.evaluation.motion_metrics`: motion measures (wrap and pop ratios, motion kept, magnitude,
  sharpness) and the family classifier of the conditioning accuracy.
- :mod:`~lvmm.evaluation.demo_report`: the demo's report, built from the measures above (``lvmm-report``).

Nothing is imported here: each module pulls in only what it needs (kornia, webdataset, ...).
"""
