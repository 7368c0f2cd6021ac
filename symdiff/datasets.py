"""Small synthetic data sets for demos, examples and tests (NumPy only, seeded, instant)."""

from __future__ import annotations

import numpy as np

__all__ = ["blobs", "spirals"]


def spirals(
    n_per_class: int = 500, noise: float = 0.3, seed: int = 0, turns: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: the classic data set no straight line separates.

    Class 0 lies on the arm ``theta * (cos theta, sin theta)``, class 1 on its point reflection, with
    ``theta`` up to ``turns`` full turns (sampled more densely far from the centre) and Gaussian noise of
    standard deviation ``noise`` (in units of the arm's radius growth per radian); the points are then
    scaled into about ``[-1, 1]^2``.

    Returns:
        ``X``: float64 array of shape ``(2 * n_per_class, 2)``; ``y``: int64 labels 0 and 1 (the first
        ``n_per_class`` rows are class 0). The same arguments always give the same arrays.

    >>> import numpy as np
    >>> import symdiff as sd
    >>> X, y = sd.datasets.spirals(n_per_class=100, seed=0)
    >>> X.shape, X.dtype, np.bincount(y).tolist()
    ((200, 2), dtype('float64'), [100, 100])
    """
    if not isinstance(n_per_class, (int, np.integer)) or isinstance(n_per_class, bool) or n_per_class < 1:
        raise ValueError(f"spirals: n_per_class must be a positive int, got {n_per_class!r}")
    if not noise >= 0:
        raise ValueError(f"spirals: noise must be >= 0, got {noise!r}")
    if not turns > 0:
        raise ValueError(f"spirals: turns must be > 0, got {turns!r}")
    rng = np.random.default_rng(seed)
    m = int(n_per_class)
    theta = np.sqrt(rng.uniform(0.0, 1.0, m)) * turns * 2 * np.pi
    arm = np.c_[theta * np.cos(theta), theta * np.sin(theta)]
    X = np.r_[arm + noise * rng.normal(size=(m, 2)), -arm + noise * rng.normal(size=(m, 2))]
    y = np.r_[np.zeros(m, dtype=np.int64), np.ones(m, dtype=np.int64)]
    return np.ascontiguousarray(X / (turns * 2 * np.pi), dtype=np.float64), y


def blobs(
    n_per_class: int = 100, centers: int = 3, spread: float = 0.5, seed: int = 0, dim: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around ``centers`` points on a circle of radius 2 (in ``dim`` dimensions).

    Returns ``X`` float64 of shape ``(centers * n_per_class, dim)`` and int64 labels ``0 .. centers-1``, class by
    class. The same arguments always give the same arrays.

    >>> import symdiff as sd
    >>> X, y = sd.datasets.blobs(n_per_class=10, centers=3, seed=0)
    >>> X.shape, y[::10].tolist()
    ((30, 2), [0, 1, 2])
    """
    if not isinstance(centers, int) or centers < 1 or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"blobs: need centers >= 1 and dim >= 2, got centers={centers!r}, dim={dim!r}")
    if not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise ValueError(f"blobs: n_per_class must be a positive int, got {n_per_class!r}")
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(centers) / centers
    means = np.zeros((centers, dim))
    means[:, 0], means[:, 1] = 2 * np.cos(angles), 2 * np.sin(angles)
    X = np.concatenate([means[k] + spread * rng.normal(size=(n_per_class, dim)) for k in range(centers)])
    y = np.repeat(np.arange(centers, dtype=np.int64), n_per_class)
    return X, y


def __dir__() -> list[str]:
    """``dir()`` lists the public names only (not ``np``, ``annotations`` or other imports)."""
    return sorted(__all__)
