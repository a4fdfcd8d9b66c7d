"""Shared fixtures: one small real Pythia jet sample per test session."""

import contextlib

import pytest


def pytest_addoption(parser):
    parser.addoption("--zoo-rtl-events", type=int, default=0,
                     help="also simulate the RTL of every model-zoo model (tests/test_user_models.py) in Verilator "
                          "against the emulator on this many events (0: no)")


SMOKE_N = 200  # jets per class


@pytest.fixture(scope="session")
def smoke_jets(tmp_path_factory):
    """Path of a jets.h5 (schema l1forge.jets/1) with SMOKE_N jets of each class, seed 7."""
    from l1forge.events.jets import generate_jets

    path = tmp_path_factory.mktemp("data") / "jets.h5"
    generate_jets(path, n_per_class=SMOKE_N, seed=7, workers=2, progress=False)
    return path


PILEUP_SMALL = dict(n_train=12, n_test=6, seed=5, train_pileup=10, test_pileups=(0, 30), hard_mpi=False,
                    library_events=300, progress=False)


@pytest.fixture(scope="session")
def pileup_settings():
    return dict(PILEUP_SMALL)


@pytest.fixture(scope="session")
def pileup_path(tmp_path_factory):
    """Path of a tiny pileup.h5 (schema l1forge.pileup/1): 12 crossings at pileup 10, 6 test crossings at 0 and 30."""
    from l1forge.events.pfcands import generate_pileup

    path = tmp_path_factory.mktemp("pileup") / "pileup.h5"
    generate_pileup(path, workers=1, **PILEUP_SMALL)
    return path


@pytest.fixture(scope="session")
def merged_path(tmp_path_factory):
    """Path of a tiny merged-calorimeter, paired pileup.h5 (schema l1forge.pileup/2): 6 crossings at pileup 30
    (train/val), 3 test crossings at pileup 0."""
    from l1forge.events.pfcands import generate_pileup

    path = tmp_path_factory.mktemp("merged") / "pileup.h5"
    generate_pileup(path, 6, 3, seed=5, train_pileup=30, test_pileups=(0,), workers=1, hard_mpi=False,
                    library_events=200, progress=False, calorimeter="merged", paired=True)
    return path


@contextlib.contextmanager
def extra_task(folder, monkeypatch, module: str, text: str):
    """The task package (and the configuration model) with one more module, ``module``.py holding ``text``, in
    ``folder``; the registries are rebuilt on entry and on exit. Yields ``folder``."""
    import l1forge.tasks as tasks
    from l1forge.config import run_config_model

    folder.mkdir()
    (folder / f"{module}.py").write_text(text)
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(folder)])
    tasks.registry.cache_clear()
    run_config_model.cache_clear()
    try:
        yield folder
    finally:
        tasks.registry.cache_clear()
        run_config_model.cache_clear()
