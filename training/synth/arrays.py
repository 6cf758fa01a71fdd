"""The numpy array types and the CDF helper every part of the generator uses."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]


def normalized_cdf(weights: F64) -> F64:
    c = np.cumsum(weights)
    c /= c[-1]
    c[-1] = 1.0
    return c
