"""Atomic artifact writing, shared by every stage (ground floor: it imports no stage).

An artifact appears under its final name only once it is complete: it is written to a temporary file in the same
directory and renamed with ``os.replace``. A crash or a kill leaves the previous version (or nothing) in place.
It gets the mode a plain ``open()`` (or ``mkdir``) would give it under the current umask, 0644 (0755) by default,
not the 0600 of the temporary file. A write that fails (disk full, no permission) raises ArtifactWriteError, one line
naming the file; the previous version stays.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import tempfile

import h5py
import numpy as np


class ArtifactError(ValueError):
    """A missing or malformed artifact; the message is one line naming the file and key."""


class ArtifactWriteError(OSError):
    """An artifact that could not be written (disk full, no permission); the message is one line naming the file."""

    def __str__(self):
        return self.strerror


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _write_error(path: pathlib.Path, err: OSError, name_folder: bool = False) -> ArtifactWriteError:
    reason = err.strerror or str(err) or type(err).__name__
    if name_folder and err.filename:  # its folder could not be made or written to
        reason += f": {err.filename}"
    return ArtifactWriteError(err.errno, f"{path}: cannot be written ({reason}); its previous version, if any, is kept")


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds. An OSError of the
    temporary file (or a disk-full, quota, read-only or I/O error) becomes ArtifactWriteError naming ``path``."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as err:
        raise _write_error(path, err, name_folder=True) from err
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename != str(tmp) and (err.filename is not None or err.errno not in _WRITE_ERRNOS):
            raise  # not a write of this artifact (the block read something else)
        raise _write_error(path, err) from err
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path, data) -> pathlib.Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return pathlib.Path(path)


def write_arrays_atomic(path, arrays: dict, attrs: dict | None = None) -> pathlib.Path:
    """Write named numpy arrays (and root attributes) to an HDF5 file atomically."""
    with atomic_path(path, ".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=np.asarray(value), track_times=False)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return pathlib.Path(path)


def read_array(path, key: str) -> np.ndarray:
    """One dataset of an HDF5 file, with a one-line error naming the file and key if it is not there."""
    path = pathlib.Path(path)
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise ArtifactError(f"{path}: dataset '{key}' is missing (has: {', '.join(f.keys())})")
            return f[key][()]
    except OSError as err:
        raise ArtifactError(f"{path}: not a readable HDF5 file ({err.__class__.__name__})") from None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cache_root() -> pathlib.Path:
    """Where tools' results are kept across runs and run directories (Verilator objects, Yosys cells, weaver-core's
    venv): ``L1FORGE_CACHE``, else ~/.cache/l1forge."""
    return pathlib.Path(os.environ.get("L1FORGE_CACHE") or pathlib.Path.home() / ".cache" / "l1forge")
