"""A bare implicit ALS fit on a world's full matrix: the yardstick for our overhead.

Prints the fit time only (loading and matrix building are not timed).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl
from implicit.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", required=True)
    parser.add_argument("--factors", type=int, required=True)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=1.0)
    args = parser.parse_args()
    frame = pl.read_parquet(args.interactions, columns=["customer_id", "product_id"])
    users = frame["customer_id"].cast(pl.Categorical).to_physical().to_numpy()
    items = frame["product_id"].cast(pl.Categorical).to_physical().to_numpy()
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    m = csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=args.factors, iterations=args.iterations, regularization=args.regularization
        )
        start = time.perf_counter()
        model.fit(m, show_progress=False)
        print(f"{time.perf_counter() - start:.3f} {m.shape[0]} {m.shape[1]} {m.nnz}")


if __name__ == "__main__":
    main()
