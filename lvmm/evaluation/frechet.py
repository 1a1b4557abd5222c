"""The Fréchet distance between Gaussians fitted to feature sets (the core of FID and FVD).

For feature sets summarised by means ``mu1, mu2`` and covariances ``S1, S2``:

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1^{1/2} S2 S1^{1/2})^{1/2} )

Everything runs in float64. The trace of the matrix square root is taken from the eigenvalues of the
*symmetric* positive semi-definite product ``S1^{1/2} S2 S1^{1/2}`` (``torch.linalg.eigh``), not from a
general ``sqrtm(S1 @ S2)``: the latter is a non-symmetric matrix whose square root (scipy's Schur
route) can return complex parts or fail when the covariances are singular, which they always are when
there are fewer samples than feature dimensions (e.g. 100 videos and 400 I3D logits). Eigenvalues
that rounding pushes below zero are clamped to zero.

With a factor ``S1 = L1 L1^T`` the same trace is ``tr((L1^T S2 L1)^{1/2})``, and with ``S2 = L2 L2^T``
too it is the sum of the singular values of ``L1^T L2``. :class:`FeatureStatistics` keeps the
features while there are no more of them than dimensions (their centred matrix is such a factor),
so that in this common low-rank case the distance needs only an ``N1 x N2`` SVD instead of two
``D x D`` eigendecompositions: exact, and fast (a 2048 x 2048 ``eigh`` takes seconds on a CPU).
"""

from __future__ import annotations

import numpy as np
import torch

DTYPE = torch.float64
MIN_SAMPLES = 2  # a covariance needs at least two samples

__all__ = ["FeatureStatistics", "psd_sqrt", "trace_sqrt_product", "frechet_distance", "MIN_SAMPLES"]


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return torch.as_tensor(x).detach().to(device="cpu", dtype=DTYPE)


class FeatureStatistics:
    """Running mean and (unbiased) covariance of feature vectors, accumulated in float64.

    Feature batches of any size can be added in any grouping: the result depends only on the set of
    vectors (up to float64 rounding), so the batch size of the feature extractor never changes a
    score. The sums are taken around a fixed shift (the first vector seen), which keeps the
    ``E[xx^T] - mu mu^T`` formula from cancelling catastrophically when features have a large mean.
    While at most ``max_rows`` (default: ``dim``) vectors were added they are also kept, for the
    low-rank factor of the covariance (see :meth:`factor`).
    """

    def __init__(self, dim: int, max_rows: int | None = None):
        self.dim = int(dim)
        self.max_rows = self.dim if max_rows is None else int(max_rows)
        self.count = 0
        self._shift: torch.Tensor | None = None
        self._sum = torch.zeros(self.dim, dtype=DTYPE)
        self._sum_outer = torch.zeros(self.dim, self.dim, dtype=DTYPE)
        self._rows: list[torch.Tensor] | None = []

    @classmethod
    def from_features(cls, features) -> FeatureStatistics:
        """Statistics of a ``(N, D)`` array or tensor of feature vectors."""
        features = _as_float64(features)
        stats = cls(features.shape[-1])
        stats.update(features)
        return stats

    def update(self, features) -> FeatureStatistics:
        """Add a ``(N, D)`` batch of feature vectors."""
        x = _as_float64(features)  # (N, D)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values; check the inputs and the weights")
        if x.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = x[0].clone()
        centred = x - self._shift
        self._sum += centred.sum(0)
        self._sum_outer += centred.T @ centred
        self.count += x.shape[0]
        if self._rows is not None and self.count <= self.max_rows:
            self._rows.append(x.clone())
        else:
            self._rows = None  # too many to keep: the covariance is the only summary
        return self

    @property
    def mean(self) -> torch.Tensor:
        """``(D,)`` float64 mean."""
        self._require(1)
        return self._shift + self._sum / self.count

    @property
    def covariance(self) -> torch.Tensor:
        """``(D, D)`` float64 unbiased covariance (divides by N - 1, as ``numpy.cov``)."""
        self._require(MIN_SAMPLES)
        centred_mean = self._sum / self.count
        cov = (self._sum_outer - self.count * torch.outer(centred_mean, centred_mean)) / (self.count - 1)
        return (cov + cov.T) / 2  # exact symmetry for eigh

    def factor(self) -> torch.Tensor:
        """``L`` with ``covariance = L @ L.T``: ``(D, N)`` from the kept features, else ``(D, D)`` via ``eigh``."""
        self._require(MIN_SAMPLES)
        if self._rows is not None:
            x = torch.cat(self._rows)  # (N, D)
            return ((x - x.mean(0)) / (self.count - 1) ** 0.5).T
        return psd_sqrt(self.covariance)

    @property
    def low_rank(self) -> bool:
        """Whether the kept features give a factor with fewer columns than dimensions."""
        return self._rows is not None and self.count < self.dim

    def _require(self, n: int) -> None:
        if self.count < n:
            raise ValueError(f"need at least {n} feature vectors for these statistics, got {self.count}")

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Mean, covariance and count as numpy arrays (e.g. to cache reference statistics in an .npz)."""
        return {"mu": self.mean.numpy(), "sigma": self.covariance.numpy(), "count": np.asarray(self.count)}


def psd_sqrt(matrix) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (float64, via ``eigh``)."""
    m = _as_float64(matrix)
    m = (m + m.T) / 2
    eigvals, eigvecs = torch.linalg.eigh(m)
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """``tr((S1 S2)^{1/2})`` for symmetric PSD ``S1, S2``, as ``tr((S1^{1/2} S2 S1^{1/2})^{1/2})``.

    The two are equal because ``S1 S2`` is similar to the symmetric ``S1^{1/2} S2 S1^{1/2}``; the
    latter's eigenvalues are real and non-negative, so the trace of its square root is the sum of
    their square roots.
    """
    root1 = psd_sqrt(sigma1)
    product = root1 @ _as_float64(sigma2) @ root1
    product = (product + product.T) / 2
    eigvals = torch.linalg.eigvalsh(product)
    return float(eigvals.clamp(min=0).sqrt().sum())


def frechet_distance(mu1, sigma1, mu2=None, sigma2=None) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    Also accepts two :class:`FeatureStatistics`: ``frechet_distance(stats_a, stats_b)``, which uses
    their low-rank factors when they have them. Returns the squared distance ``d^2``, which is what
    FID and FVD report.
    """
    if isinstance(mu1, FeatureStatistics) and isinstance(sigma1, FeatureStatistics):
        return _frechet_from_statistics(mu1, sigma1)
    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = _as_float64(sigma1), _as_float64(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"inconsistent shapes: mu {tuple(mu1.shape)}/{tuple(mu2.shape)}, sigma "
            f"{tuple(sigma1.shape)}/{tuple(sigma2.shape)}"
        )
    mean_term = float(((mu1 - mu2) ** 2).sum())
    trace_term = float(torch.trace(sigma1) + torch.trace(sigma2)) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return mean_term + trace_term


def _frechet_from_statistics(a: FeatureStatistics, b: FeatureStatistics) -> float:
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    if not (a.low_rank or b.low_rank):
        return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)
    mean_term = float(((a.mean - b.mean) ** 2).sum())
    if a.low_rank and b.low_rank:
        la, lb = a.factor(), b.factor()  # (D, Na), (D, Nb)
        trace_a, trace_b = float((la**2).sum()), float((lb**2).sum())
        trace_sqrt = float(torch.linalg.svdvals(la.T @ lb).sum())
    else:
        low, full = (a, b) if a.low_rank else (b, a)
        factor, sigma = low.factor(), full.covariance
        trace_a, trace_b = float((factor**2).sum()), float(torch.trace(sigma))
        inner = factor.T @ sigma @ factor  # (N, N), similar to the nonzero part of S_low S_full
        trace_sqrt = float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum())
    return mean_term + trace_a + trace_b - 2.0 * trace_sqrt
