"""The best matrix-product rate of this machine at SmolLM2's MLP shapes (the floor the benchmarks quote)."""

from __future__ import annotations

import time


def best_float32_rate(rows: int, reps: int = 200, dtype=None) -> float:
    """GFLOP/s of the faster of ``(rows x 576) @ (576 x 1536)`` and ``(rows x 1536) @ (1536 x 576)`` in float32
    (or ``dtype``)."""
    import torch

    best, dtype = 0.0, dtype or torch.float32
    for a, b in ((576, 1536), (1536, 576)):
        x, y = torch.randn(rows, a, dtype=dtype), torch.randn(a, b, dtype=dtype)
        for _ in range(5):
            x @ y
        t0 = time.perf_counter()
        for _ in range(reps):
            x @ y
        best = max(best, 2 * rows * x.shape[1] * y.shape[1] * reps / (time.perf_counter() - t0) / 1e9)
    return best
