"""Anomaly teachers: masked periodic loss, short training on synthetic ADC2021-layout events, ONNX parity, artefacts."""

import json

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from l1forge.teachers.anomaly import AE_KINDS, anomaly_scores, load_anomaly_teacher, train_anomaly_teacher
from l1forge.teachers.autoencoders import SLOT_TYPES, build_autoencoder, reconstruction_loss, targets
from l1forge.teachers.models import count_params

torch.set_num_threads(1)
N_BACKGROUND, N_SIGNAL = 3000, 600


def synthetic_events(n, signal=False, seed=0):
    """(n, 19, 4) events: SM-like background (few leptons, 0-10 jets with falling pT, MET balancing them) or a
    4-lepton signal (2 e/gamma + 2 muons with hard pT on top of the same jets)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros((n, 19, 4), np.float32)
    n_jets = np.minimum(rng.poisson(2.5, n), 10)
    n_eg, n_mu = (np.full(n, 2), np.full(n, 2)) if signal else (rng.binomial(4, 0.05, n), rng.binomial(4, 0.03, n))
    for first, slots, count, pt0, scale, eta_max, code in ((1, 4, n_eg, 10, 10, 2.5, 2), (5, 4, n_mu, 5, 8, 2.4, 3),
                                                           (9, 10, n_jets, 20, 20, 4.0, 4)):
        if signal and code != 4:
            pt0, scale = 30, 40
        for j in range(slots):
            real = j < count
            ev[real, first + j] = np.stack([pt0 + rng.exponential(scale, n), rng.uniform(-eta_max, eta_max, n),
                                            rng.uniform(-np.pi, np.pi, n), np.full(n, code)], 1)[real]
        block = ev[:, first : first + slots]
        block[:] = np.take_along_axis(block, np.argsort(-block[..., 0], 1)[..., None], 1)
    px = -(ev[:, 1:, 0] * np.cos(ev[:, 1:, 2])).sum(1) + rng.normal(0, 10, n)
    py = -(ev[:, 1:, 0] * np.sin(ev[:, 1:, 2])).sum(1) + rng.normal(0, 10, n)
    ev[:, 0] = np.stack([np.hypot(px, py), np.zeros(n), np.arctan2(py, px), np.ones(n)], 1)
    return ev


@pytest.fixture(scope="module")
def data():
    """objects, split (signal in test only), background mask."""
    objects = np.concatenate([synthetic_events(N_BACKGROUND, seed=1), synthetic_events(N_SIGNAL, True, seed=2)])
    split = np.concatenate([np.random.default_rng(3).choice(3, N_BACKGROUND, p=[0.6, 0.2, 0.2]),
                            np.full(N_SIGNAL, 2)]).astype(np.int8)
    return objects, split, np.arange(len(objects)) < N_BACKGROUND


@pytest.fixture(scope="module", params=AE_KINDS)
def trained(request, data, tmp_path_factory):
    objects, split, background = data
    out = tmp_path_factory.mktemp(f"anomaly_{request.param}")
    result = train_anomaly_teacher(request.param, objects, split, out, size="smoke", epochs=3, batch_size=64, lr=1e-2,
                                   max_steps=80, background=background, progress=False)
    return request.param, out, result


def _untrained(kind, objects):
    torch.manual_seed(1)
    model = build_autoencoder(kind, "smoke")
    model.features.fit(objects, (objects[..., 0] > 0).astype(np.float32))
    return model.eval()


def _val_loss(model, objects):
    with torch.no_grad():
        reco, kl = model.losses(torch.from_numpy(objects))
    return float((reco + model.beta * kl).mean())


def test_training_lowers_validation_loss(trained, data):
    kind, out, result = trained
    objects, split, background = data
    val = objects[(split == 1) & background]
    before, after = _val_loss(_untrained(kind, objects[split == 0]), val), _val_loss(load_anomaly_teacher(out), val)
    assert after < 0.8 * before, (before, after)
    assert after == pytest.approx(result["best_val_loss"], rel=1e-4)
    assert result["best_val_loss"] == min(h["val_loss"] for h in result["history"])
    assert (result["kind"], result["size"]) == (kind, "smoke")
    assert result["params"] == count_params(load_anomaly_teacher(out))
    assert result["train_events_per_s"] > 0 and 1 <= result["best_epoch"] <= len(result["history"])


def test_signal_scores_higher(trained, data):
    kind, out, _ = trained
    objects, split, background = data
    test = split == 2
    score = anomaly_scores(load_anomaly_teacher(out), objects[test])
    assert score[~background[test]].mean() > score[background[test]].mean()
    assert roc_auc_score(~background[test], score) > 0.6


def test_artefacts(trained, data):
    kind, out, result = trained
    objects = data[0]
    model = load_anomaly_teacher(out)
    with h5py.File(out / "scores.h5") as f:
        score, latent, kl = f["score"][:], f["latent_score"][:], f["kl_score"][:]
        assert (f.attrs["kind"], f.attrs["size"], f.attrs["score"], f.attrs["pt_target"]) == (kind, "smoke", "reco", "log")
    assert score.shape == latent.shape == kl.shape == (len(objects),) and score.dtype == latent.dtype == np.float32
    np.testing.assert_allclose(score, anomaly_scores(model, objects, batch_size=1000), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(latent, anomaly_scores(model, objects, score="latent"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kl, anomaly_scores(model, objects, score="kl"), rtol=1e-5, atol=1e-5)
    assert np.all(kl >= -1e-5) and not np.allclose(kl, latent / 2)  # KL = (mu^2 + var - 1 - log var) / 2 >= 0
    assert json.loads((out / "history.json").read_text()) == result["history"]
    assert {"train_loss", "val_loss", "val_score", "seconds", "events_per_s"} <= set(result["history"][0])
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.onnx", "model.pt", "scores.h5"]


def test_onnx_matches_torch(trained, data):
    import onnxruntime as ort

    kind, out, result = trained
    objects = data[0][data[1] == 2]
    assert result["onnx_max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["score"], {"objects": objects})[0]
    assert got.shape == (len(objects),)
    np.testing.assert_allclose(got, anomaly_scores(load_anomaly_teacher(out), objects), rtol=0, atol=1e-4)


def test_loss_formula_and_met_eta():
    objects = np.zeros((1, 19, 4), np.float32)
    objects[0, 0] = [50.0, 0.0, 1.0, 1]  # MET
    objects[0, 9] = [30.0, 0.5, -3.0, 4]  # jet
    recon = torch.zeros(1, 19, 4)
    recon[0, 0] = torch.tensor([np.log1p(40.0), 7.0, np.cos(1.5), np.sin(1.5)])  # MET eta ignored
    recon[0, 9] = torch.tensor([np.log1p(30.0), 0.0, np.cos(-3.0), np.sin(-3.0)])
    recon[0, 3] = 9.0  # a padded slot
    want = (np.log1p(50.0) - np.log1p(40.0)) ** 2 + 4 * np.sin(0.25) ** 2 + 0.5**2
    assert float(reconstruction_loss(recon, torch.from_numpy(objects))[0]) == pytest.approx(want, rel=1e-5)


def test_linear_pt_target():
    objects = np.zeros((1, 19, 4), np.float32)
    objects[0, 5] = [80.0, 1.0, 0.5, 3]  # a muon
    recon = targets(torch.from_numpy(objects), "linear").clone()
    assert float(recon[0, 5, 0]) == pytest.approx(80.0 / 16)
    recon[0, 5, 0] -= 0.5  # 8 GeV low: (8 / 16)^2
    assert float(reconstruction_loss(recon, torch.from_numpy(objects), "linear")[0]) == pytest.approx(0.25)
    model = build_autoencoder("gnn", "smoke", pt_target="linear")
    assert model.pt_target == "linear"
    with pytest.raises(ValueError, match="pt_target"):
        build_autoencoder("transformer", "smoke", pt_target="sqrt")


def test_linear_teacher_trains_and_reloads(data, tmp_path):
    objects, split, background = data
    result = train_anomaly_teacher("transformer", objects, split, tmp_path, size="smoke", epochs=2, batch_size=64,
                                   lr=1e-2, max_steps=40, background=background, progress=False, pt_target="linear")
    assert result["pt_target"] == "linear" and result["history"][-1]["val_loss"] < result["history"][0]["val_loss"]
    model = load_anomaly_teacher(tmp_path)
    assert model.pt_target == "linear"
    with h5py.File(tmp_path / "scores.h5") as f:
        assert f.attrs["pt_target"] == "linear"
        np.testing.assert_allclose(f["score"][:100], anomaly_scores(model, objects[:100]), rtol=1e-5, atol=1e-4)


def test_phi_is_periodic():
    objects = torch.from_numpy(synthetic_events(64, seed=4))
    rotated = objects.clone()
    rotated[..., 2] += 2 * np.pi
    rotated[:32, :, 2] -= 4 * np.pi
    loss = reconstruction_loss(targets(rotated), objects)
    np.testing.assert_allclose(loss.numpy(), 0.0, atol=1e-5)  # reconstructing phi + 2 pi k is perfect
    shifted = objects.clone()
    shifted[..., 2] += 0.3
    far = shifted.clone()
    far[..., 2] += 2 * np.pi
    np.testing.assert_allclose(reconstruction_loss(targets(far), objects).numpy(),
                               reconstruction_loss(targets(shifted), objects).numpy(), rtol=1e-4, atol=1e-5)
    for kind in AE_KINDS:
        model = _untrained(kind, objects.numpy())
        with torch.no_grad():
            np.testing.assert_allclose(model(rotated).numpy(), model(objects).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", AE_KINDS)
def test_padded_slots_do_not_matter(kind):
    objects = synthetic_events(64, seed=5)
    objects[0, 1:] = 0  # MET only
    objects[1] = 0  # nothing at all
    model = _untrained(kind, objects)
    padded = objects[..., 0] <= 0
    junk = objects.copy()
    rng = np.random.default_rng(0)
    junk[padded] = rng.normal(0, 5, (int(padded.sum()), 4))
    junk[padded, 0] = -np.abs(junk[padded, 0]) * (rng.random(int(padded.sum())) < 0.5)  # pT <= 0: still padding
    x, j = torch.from_numpy(objects), torch.from_numpy(junk)
    with torch.no_grad():
        ref = model(x)
        assert torch.isfinite(ref).all()
        assert torch.equal(model(j), ref)
        assert torch.equal(model.latent_score(j), model.latent_score(x))
        recon = model.decode(model.encode(x)[0])
        noisy = recon + torch.from_numpy(padded[..., None] * rng.normal(0, 3, recon.shape).astype(np.float32))
        assert torch.equal(reconstruction_loss(noisy, x), reconstruction_loss(recon, x))
        assert not torch.equal(reconstruction_loss(noisy, x), reconstruction_loss(noisy + 0.1, x))


def test_gnn_latent_is_invariant_under_same_type_permutations():
    objects = synthetic_events(64, seed=6)
    objects[:, 3:5] = synthetic_events(64, signal=True, seed=7)[:, 3:5]  # some events with several e/gamma
    model = _untrained("gnn", objects)
    rng = np.random.default_rng(1)
    perm = objects.copy()
    for i in range(len(perm)):
        perm[i, 1:5] = objects[i, 1 + rng.permutation(4)]
        perm[i, 9:] = objects[i, 9 + rng.permutation(10)]
    x, p = torch.from_numpy(objects), torch.from_numpy(perm)
    with torch.no_grad():
        np.testing.assert_allclose(model.latent_score(p).numpy(), model.latent_score(x).numpy(), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(model(p), model(x))  # the reconstruction keeps the slot order


@pytest.mark.parametrize("kind,minimum", [("transformer", 500_000), ("gnn", 100_000)])
def test_full_size_parameter_budget(kind, minimum):
    sizes = [count_params(build_autoencoder(kind, s)) for s in ("smoke", "demo", "full")]
    assert sizes[0] < sizes[1] < minimum <= sizes[2]


def test_real_events(tmp_path):
    """A short run on generated L1 objects with their weights; only structure is checked (too few events for AUC)."""
    anomaly = pytest.importorskip("l1forge.events.anomaly")
    np.testing.assert_array_equal(SLOT_TYPES.numpy(), anomaly.ROW_TYPES)
    anomaly.generate_anomaly(tmp_path / "anomaly.h5", n_background=150, n_signal=30, seed=3, pileup=10, workers=2,
                             signals=["a50_4l"], hard_mpi=False, library_events=200, progress=False)
    sample = anomaly.read_anomaly(tmp_path / "anomaly.h5")
    for kind in AE_KINDS:
        out = tmp_path / kind
        result = train_anomaly_teacher(kind, sample.objects, sample.split, out, size="smoke", epochs=2,
                                       batch_size=32, lr=1e-2, weights=sample.weight, background=~sample.is_signal,
                                       progress=False)
        with h5py.File(out / "scores.h5") as f:
            score = f["score"][:]
        assert score.shape == (len(sample.objects),) and np.isfinite(score).all()
        assert result["onnx_max_abs_diff"] < 1e-4 and np.isfinite(result["best_val_loss"])
