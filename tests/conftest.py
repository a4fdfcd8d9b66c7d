"""Shared fixtures: one small real Pythia jet sample per test session."""

import pytest

SMOKE_N = 200  # jets per class


@pytest.fixture(scope="session")
def smoke_jets(tmp_path_factory):
    """Path of a jets.h5 (schema l1forge.jets/1) with SMOKE_N jets of each class, seed 7."""
    from events.jets import generate_jets

    path = tmp_path_factory.mktemp("data") / "jets.h5"
    generate_jets(path, n_per_class=SMOKE_N, seed=7, workers=2, progress=False)
    return path
