"""Bad input at scale: malformed configurations, data files and model files fed to the CLI (in process, through its
entry point) give exit code 1 and one line naming the culprit, never a traceback; nothing is written."""

import string
import sys

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1forge.cli import main
from l1forge.config import run_config_model

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12)
JUNK = st.one_of(st.text(max_size=8), st.floats(allow_nan=True), st.lists(st.integers(), max_size=3),
                 st.dictionaries(NAMES, st.integers(), max_size=2), st.just(None))


def run_cli(capsys, monkeypatch, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["l1forge", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def assert_one_line_error(code, text, *must_name):
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in text, text
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, text
    assert all(name in errors[0] for name in must_name), (errors[0], must_name)


def _sections():
    """(section, field name, field info) of every section of the configuration with plain fields."""
    model = run_config_model()
    for section, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            yield from ((section, name, info) for name, info in sub.model_fields.items())


FIELDS = list(_sections())
INT_FIELDS = [(s, n) for s, n, info in FIELDS if info.annotation is int]


@st.composite
def bad_configs(draw):
    """A configuration that holds exactly one error: an unknown key at the top or in a section, a non-number where
    an int goes, or a negative number where a count goes."""
    kind = draw(st.sampled_from(["unknown_top", "unknown_key", "not_a_number", "negative"]))
    if kind == "unknown_top":
        key = draw(NAMES.filter(lambda k: k not in run_config_model().model_fields))
        return {key: draw(JUNK)}, key
    section, name = draw(st.sampled_from(INT_FIELDS))
    if kind == "unknown_key":
        known = run_config_model().model_fields[section].annotation.model_fields
        key = draw(NAMES.filter(lambda k: k not in known))
        return {section: {key: draw(JUNK)}}, f"{section}.{key}"
    if kind == "not_a_number":
        return {section: {name: draw(st.text(string.ascii_letters, min_size=1, max_size=6))}}, f"{section}.{name}"
    info = run_config_model().model_fields[section].annotation.model_fields[name]
    if not any(getattr(m, "ge", None) is not None and m.ge >= 0 for m in info.metadata):
        return {section: {name: "x"}}, f"{section}.{name}"
    return {section: {name: -draw(st.integers(1, 10**6))}}, f"{section}.{name}"


@SETTINGS
@given(case=bad_configs())
def test_malformed_configurations(case, tmp_path, capsys, monkeypatch):
    config, key = case
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    code, text = run_cli(capsys, monkeypatch, "generate", "--config", path, "--out", tmp_path / "run")
    assert_one_line_error(code, text, str(path), f"'{key}'")
    assert not (tmp_path / "run" / "data").exists()


@SETTINGS
@given(blob=st.binary(max_size=4096), datasets=st.dictionaries(NAMES, st.integers(1, 40), max_size=3),
       as_hdf5=st.booleans())
def test_malformed_data_files(blob, datasets, as_hdf5, tmp_path, capsys, monkeypatch):
    """`generate --data FILE`: random bytes, or an HDF5 file of random datasets, named in one line."""
    path = tmp_path / "jets.h5"
    if as_hdf5:
        with h5py.File(path, "w") as f:
            for name, n in datasets.items():
                f[name] = np.random.default_rng(n).normal(size=(n, 3))
    else:
        path.write_bytes(blob)
    code, text = run_cli(capsys, monkeypatch, "generate", "--data", path, "--out", tmp_path / "run", "-q")
    assert_one_line_error(code, text, str(path))
    assert not (tmp_path / "run" / "data" / "jets.h5").exists()


@SETTINGS
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from([".h5", ".keras", ".onnx", ""]))
def test_malformed_model_files(blob, suffix, tmp_path, capsys, monkeypatch):
    """`emulate --model FILE --data X`: a file that is not a model is named in one line."""
    model, data = tmp_path / f"model{suffix}", tmp_path / "x.npy"
    model.write_bytes(blob)
    np.save(data, np.zeros((4, 16)))
    code, text = run_cli(capsys, monkeypatch, "emulate", "--model", model, "--data", data)
    assert_one_line_error(code, text, str(model))
