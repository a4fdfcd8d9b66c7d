"""The per-particle pileup student: firmware-computable inputs, and real quantization-aware training."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from l1forge.events.mitigation import local_sums
from l1forge.events.pfcands import read_pileup
from l1forge.students.pileup import INPUT_NAMES, LOCAL_RADII, PT_SCALE, student_inputs, train_weight_student


@pytest.fixture(scope="module")
def sample(pileup_path):
    return read_pileup(pileup_path)


def test_inputs_are_own_features_and_neighbourhood_sums(sample):
    x = student_inputs(sample)
    assert x.shape == (len(sample.pt), len(INPUT_NAMES)) and x.dtype == np.float32
    assert np.allclose(x[:, 0], sample.pt * PT_SCALE) and np.array_equal(x[:, 2], sample.dz)
    assert np.all(x[:, 3:8].sum(1) == 1)  # one-hot type
    wide = INPUT_NAMES.index(f"sum_neutrals_r{LOCAL_RADII[1]:g}")
    assert np.allclose(x[:, wide], local_sums(sample, LOCAL_RADII[1])[:, 2] * PT_SCALE)
    narrow = INPUT_NAMES.index(f"sum_neutrals_r{LOCAL_RADII[0]:g}")
    assert np.all(x[:, narrow] <= x[:, wide] + 1e-6)  # the inner ring is inside the outer one


def test_student_learns_a_per_particle_weight(sample, tmp_path):
    """Trained on the truth label as its target, the student separates PV from pileup far above chance."""
    x = student_inputs(sample)
    busy = sample.pileup > 0
    train = sample.particle_rows((sample.split == 0) & busy)
    val = sample.particle_rows((sample.split != 0) & busy)
    result = train_weight_student(x, sample.is_pv.astype(np.float32), sample.pt, train, val, tmp_path, hidden=(16,),
                                  epochs=6, batch_size=256, progress=False)
    assert result["best_val_loss"] < result["val_mse_constant"]
    from l1forge.core.artifacts import read_array

    weight = read_array(tmp_path / "predictions.h5", "weight")
    assert weight.shape == (len(x),) and (tmp_path / "model.h5").exists()
    assert roc_auc_score(sample.is_pv[val], weight[val]) > 0.7
    with pytest.raises(ValueError, match="teacher_weight must lie in"):
        train_weight_student(x, np.full(len(x), 2.0, np.float32), sample.pt, train, val, tmp_path, progress=False)
