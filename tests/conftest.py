"""Shared fixtures: small real data (scikit-learn's digits, a slice of MNIST), one seed."""
from __future__ import annotations

import os
from pathlib import Path

# Before numpy: the BLAS and OpenMP libraries loaded later (scipy's own OpenBLAS, scikit-learn's
# libgomp) read these when they load, after threadpool_limits below has run, and would otherwise
# start one thread per core in each pytest-xdist worker. Subprocesses of the tests inherit them.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np
import pytest
import torch

from threadpoolctl import threadpool_limits

# One thread for torch and BLAS in tests: on a 2-core machine, OpenMP threads spinning against
# joblib workers or another process turn a 0.06 s fit into 9 s.
torch.set_num_threads(1)
threadpool_limits(1)

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("PSEUDOLABEL_REQUIRE_ALL") == "1"


def _missing(what: str):
    """Skip locally, fail in CI (PSEUDOLABEL_REQUIRE_ALL=1), when a real resource is missing."""
    if REQUIRE_ALL:
        pytest.fail(f"{what} is missing and PSEUDOLABEL_REQUIRE_ALL=1", pytrace=False)
    pytest.skip(f"{what} is missing")


@pytest.fixture
def seed() -> int:
    return 0


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as (n, 8, 8) float images and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    candidates = [ROOT.parent / "shared" / "data" / "mnist.npz"]
    if os.environ.get("PSEUDOLABEL_DATA"):
        candidates.insert(0, Path(os.environ["PSEUDOLABEL_DATA"]) / "mnist.npz")
    for c in candidates:
        if c.is_file():
            return c
    _missing("../shared/data/mnist.npz")


@pytest.fixture(scope="session")
def mnist_small(mnist_path):
    """The first 3000 MNIST training and 1000 test images (uint8), enough to train in seconds."""
    with np.load(mnist_path) as d:
        return (d["x_train"][:3000], d["y_train"][:3000].astype(np.int64),
                d["x_test"][:1000], d["y_test"][:1000].astype(np.int64))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = "/usr/bin/chromium"
    if not Path(path).exists():
        _missing("Debian's chromium (/usr/bin/chromium)")
    return path


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
