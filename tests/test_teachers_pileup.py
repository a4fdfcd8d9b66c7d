"""Pileup teachers on a tiny real sample: they learn, padding and phi wrap-around change nothing, ONNX equals torch."""

import json

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from l1forge.events.pfcands import generate_pileup, read_pileup
from l1forge.teachers.models import count_params
from l1forge.teachers.pileup import (
    KINDS,
    load_pileup_teacher,
    pad_events,
    predict_weights,
    size_batches,
    train_pileup_teacher,
)
from l1forge.teachers.pileup_models import build_pileup_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("pileup") / "pu.h5"
    generate_pileup(path, 60, 6, seed=3, train_pileup=15, test_pileups=(15,), workers=1, hard_mpi=False,
                    library_events=200, progress=False)
    s = read_pileup(path)
    return s.features(), s.offsets, s.is_pv.astype(np.float32), s.split


@pytest.fixture(scope="module", params=KINDS)
def trained(request, sample, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"pileup_{request.param}")
    result = train_pileup_teacher(request.param, *sample, out, size="smoke", epochs=10, batch_size=8, lr=1e-2,
                                  progress=False)
    return request.param, out, result


def _val(sample):
    features, offsets, is_pv, split = sample
    rows = np.repeat(split == 1, np.diff(offsets))
    return rows, is_pv[rows], features[rows, 5] == 0


def _loss(model, sample):
    rows, y, _ = _val(sample)
    w = np.clip(predict_weights(model, sample[0], sample[1])[rows], 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(w) + (1 - y) * np.log(1 - w)))


def test_training_lowers_validation_loss(trained, sample):
    kind, out, result = trained
    torch.manual_seed(0)
    untrained = build_pileup_model(kind, "smoke")
    untrained.load_state_dict({k: v for k, v in load_pileup_teacher(out).state_dict().items()
                               if k.startswith("features.")}, strict=False)  # same input standardisation
    before, after = _loss(untrained, sample), _loss(load_pileup_teacher(out), sample)
    assert after < 0.7 * before, (before, after)
    assert after == pytest.approx(result["best_val_loss"], rel=1e-3)
    assert result["best_val_loss"] == min(h["val_loss"] for h in result["history"])
    steps = 10 * -(-int((sample[3] == 0).sum()) // 8)
    assert (result["kind"], result["size"], result["epochs_run"], result["steps"]) == (kind, "smoke", 10, steps)
    assert result["params"] == count_params(load_pileup_teacher(out)) and result["train_seconds"] > 0


def test_teacher_separates_pv_from_pileup(trained, sample):
    _, out, result = trained
    rows, y, neutral = _val(sample)
    with h5py.File(out / "weights.h5") as f:
        w = f["weight"][:]
    assert result["val_auc"] == pytest.approx(roc_auc_score(y, w[rows]), abs=2e-3)
    assert result["val_auc"] > 0.8 and result["val_auc_neutral"] > 0.6, result
    assert result["val_auc_neutral"] == pytest.approx(roc_auc_score(y[neutral], w[rows][neutral]), abs=2e-3)
    assert w[rows][y == 1].mean() > 2 * w[rows][y == 0].mean()


def test_artefacts(trained, sample):
    kind, out, result = trained
    features, offsets = sample[:2]
    with h5py.File(out / "weights.h5") as f:
        w = f["weight"][:]
        assert (f.attrs["kind"], f.attrs["size"]) == (kind, "smoke")
    assert w.shape == (len(features),) and w.dtype == np.float32 and 0 <= w.min() and w.max() <= 1
    np.testing.assert_allclose(w, predict_weights(load_pileup_teacher(out), features, offsets, batch_size=3), atol=1e-5)
    assert json.loads((out / "history.json").read_text()) == result["history"]
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.onnx", "model.pt", "weights.h5"]


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_never_matters(trained, sample, train_mode):
    """Extra padded slots full of garbage leave every real candidate's logit unchanged, also with training-mode
    batch-norm statistics."""
    features, offsets = sample[:2]
    model = load_pileup_teacher(trained[1]).train(train_mode)
    x, mask, _ = pad_events(features, offsets, np.array([0, 1, 2]))
    extra = 50
    x2 = torch.cat([x, 100 * torch.randn(3, extra, x.shape[2])], dim=1)
    x2[:, : x.shape[1]][mask == 0] = 100 * torch.randn(int((mask == 0).sum()), x.shape[2])
    mask2 = torch.cat([mask, torch.zeros(3, extra)], dim=1)
    with torch.no_grad():
        ref, got = model(x, mask), model(x2, mask2)
    real = mask > 0
    np.testing.assert_allclose(got[:, : x.shape[1]][real].numpy(), ref[real].numpy(), rtol=1e-5, atol=1e-5)
    assert (torch.sigmoid(got)[mask2 == 0] == 0).all()


def test_phi_wraps_around(trained, sample):
    features, offsets = sample[:2]
    model = load_pileup_teacher(trained[1])
    shifted = features.copy()
    shifted[::2, 2] += 2 * np.pi  # same direction, other side of the branch cut
    np.testing.assert_allclose(predict_weights(model, shifted, offsets), predict_weights(model, features, offsets),
                               atol=1e-4)


def test_onnx_matches_torch_for_any_batch_and_size(trained, sample):
    import onnxruntime as ort

    _, out, result = trained
    features, offsets = sample[:2]
    model = load_pileup_teacher(out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert result["onnx_max_abs_diff"] < 1e-4
    for events in (np.array([5]), np.arange(len(offsets) - 6, len(offsets) - 1)):
        x, mask, rows = pad_events(features, offsets, events)
        got = session.run(["weight"], {"candidates": x.numpy(), "mask": mask.numpy()})[0]
        assert got.shape == mask.shape
        np.testing.assert_allclose(got[mask.numpy() > 0], predict_weights(model, features, offsets)[rows], atol=1e-4)
        assert (got[mask.numpy() == 0] == 0).all()


def test_size_batches_cover_every_event_once_within_budget():
    offsets = np.concatenate([[0], np.cumsum(np.random.default_rng(0).integers(0, 3000, 200))])
    events = np.arange(3, 200, 2)
    batches = size_batches(offsets, events, batch_size=16, budget=10**7)
    assert np.array_equal(np.sort(np.concatenate(batches)), events)
    counts = np.diff(offsets)
    sizes = np.concatenate([counts[b] for b in batches])
    assert np.all(np.diff(sizes) >= 0)
    assert all(len(b) <= 16 and (len(b) == 1 or len(b) * counts[b].max() ** 2 <= 10**7) for b in batches)


def test_bad_inputs(sample, tmp_path):
    features, offsets, is_pv, split = sample
    with pytest.raises(ValueError, match="kind"):
        train_pileup_teacher("mlp", *sample, tmp_path, progress=False)
    with pytest.raises(ValueError, match="validation"):
        train_pileup_teacher("gnn", features, offsets, is_pv, np.where(split == 1, 0, split), tmp_path, progress=False)
    with pytest.raises(ValueError, match="features"):
        train_pileup_teacher("gnn", features[:, :4], offsets, is_pv, split, tmp_path, progress=False)


# ---- optimal-transport training (teachers/pileup_ot.py) on a merged, paired sample --------------------------------
from l1forge.teachers import pileup_ot  # noqa: E402
from l1forge.teachers.pileup import ot_event_losses, paired_targets  # noqa: E402


def _grid(eta, phi, pt):
    cells = pileup_ot.cell_index(np.array(eta), np.array(phi))
    return torch.from_numpy(np.bincount(cells, np.array(pt, float), len(pileup_ot.cell_points())))[None].float()


def test_ot_loss_is_zero_for_the_same_event_and_grows_with_displaced_pileup():
    """Identical weighted and no-pileup events: ~0. Pileup added far from the hard scatter costs more than pileup
    added next to it, and more pileup costs more; the MET term is the squared MET difference over MET_SCALE_GEV^2."""
    hard = _grid([0.0, 0.1, -1.0], [0.0, 0.05, 2.0], [50.0, 20.0, 30.0])
    zero = torch.zeros(1, 2)
    same = pileup_ot.ot_loss(hard, hard, zero, zero)
    assert abs(float(same)) < 1e-4
    near = _grid([0.0, 0.1, -1.0, 0.05], [0.0, 0.05, 2.0, 0.0], [50.0, 20.0, 30.0, 10.0])
    far = _grid([0.0, 0.1, -1.0, 3.5], [0.0, 0.05, 2.0, -2.0], [50.0, 20.0, 30.0, 10.0])
    farther = _grid([0.0, 0.1, -1.0, 3.5], [0.0, 0.05, 2.0, -2.0], [50.0, 20.0, 30.0, 40.0])
    losses = [float(pileup_ot.ot_loss(g, hard, zero, zero)) for g in (near, far, farther)]
    assert 0 < losses[0] < losses[1] < losses[2], losses
    met = torch.tensor([[30.0, 40.0]])
    assert float(pileup_ot.ot_loss(hard, hard, met, zero)) == pytest.approx(2500 / pileup_ot.MET_SCALE_GEV**2, rel=1e-3)
    weights = torch.full((1, 4), 1.0, requires_grad=True)  # differentiable in the weights
    pt, cell = torch.tensor([[50.0, 20.0, 30.0, 40.0]]), torch.from_numpy(
        pileup_ot.cell_index(np.array([0.0, 0.1, -1.0, 3.5]), np.array([0.0, 0.05, 2.0, -2.0])))[None]
    pileup_ot.ot_loss(pileup_ot.binned(pt * weights, cell), hard, zero, zero).sum().backward()
    assert weights.grad[0, 3] > 0 and torch.isfinite(weights.grad).all()  # less of the far pileup: lower loss


@pytest.fixture(scope="module")
def merged_sample(merged_path):
    s = read_pileup(merged_path)
    n = s.nopu
    return s, dict(pt=n.pt, eta=n.eta, phi=n.phi, offsets=n.offsets)


def test_ot_teacher_learns_without_truth(merged_sample, tmp_path):
    """Trained on the paired sample alone, a few steps lower its OT loss on the validation crossings; the truth
    (PV fractions) only serves the reported AUC, and a truth teacher trains on fractions as soft targets."""
    s, paired = merged_sample
    features, split = s.features(), np.where(s.pileup == 30, s.split, 2)
    result = train_pileup_teacher("gnn", features, s.offsets, s.pv_fraction, split, tmp_path / "ot", size="smoke",
                                  epochs=3, batch_size=3, lr=1e-2, progress=False, training="optimal_transport",
                                  paired=paired)
    assert result["training"] == "optimal_transport"
    targets = paired_targets(paired, s.n_events)
    val = np.flatnonzero(split == 1)
    with h5py.File(tmp_path / "ot" / "weights.h5") as f:
        trained = f["weight"][:]
    after = ot_event_losses(trained, features, s.offsets, val, targets).mean()
    before = ot_event_losses(np.ones(len(features), np.float32), features, s.offsets, val, targets).mean()
    assert after == pytest.approx(result["best_val_loss"], rel=1e-4) and after < 0.7 * before, (before, after)
    assert 0 <= result["val_auc"] <= 1
    truth = train_pileup_teacher("gnn", features, s.offsets, s.pv_fraction, split, tmp_path / "truth", size="smoke",
                                 epochs=1, batch_size=2, lr=1e-2, progress=False)
    assert truth["training"] == "truth" and truth["best_val_loss"] < np.log(2)  # better than a constant 1/2
    with pytest.raises(ValueError, match="needs the paired no-pileup events"):
        train_pileup_teacher("gnn", features, s.offsets, s.pv_fraction, split, tmp_path / "x",
                             training="optimal_transport", progress=False)
    with pytest.raises(ValueError, match="unknown pileup teacher training 'labels'"):
        train_pileup_teacher("gnn", features, s.offsets, s.pv_fraction, split, tmp_path / "x", training="labels",
                             progress=False)
