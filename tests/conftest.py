"""Shared test set-up: offline wandb, CPU-only determinism, a GPU marker that skips without one, and the
``one_thread`` fixture; one intra-op thread per xdist worker."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Under pytest-xdist every worker (and every process a test starts) would take one intra-op thread per
# core: on the 2-core CI that oversubscribes the cores, and OpenMP threads spinning against each other
# made single tests up to 25x slower than alone (1.2 s alone, 33 s in the suite). One thread each keeps
# the workers from fighting; subprocesses inherit it through OMP_NUM_THREADS.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: the tiny networks gain nothing from more, and on a shared
    2-core machine a second thread spinning against other processes made them up to 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
