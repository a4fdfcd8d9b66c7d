"""Train, predict and export a teacher with weaver-core itself (CMS's ParticleNet/ParT framework), in its own venv.

weaver-core 0.4.17 needs numpy < 2 and uproot < 5.2, and 0.5.x needs numpy >= 2.1 (../shared/README.md): neither
lives beside the flow's stack, so `weaver_venv()` builds a virtual environment for it once, cached in
``<L1FORGE_CACHE or ~/.cache/l1forge>/weaver-core-0.4.17`` (about 2.5 minutes and 1.7 GB: `REQUIREMENTS` from the
package index; torch is not among weaver-core's declared requirements). `run_weaver(args, cwd)` runs the `weaver`
command there, e.g.

    venv = weaver_venv()
    run_weaver(["--data-train", "jets.root", "--data-config", "cfg.yaml", "--network-config", "pn.py",
                "--model-prefix", "out/pn", "--num-epochs", "1", "--steps-per-epoch", "8", "--gpus", "",
                "--num-workers", "0", "--in-memory", "--fetch-step", "1"], cwd)
    run_weaver([..., "--model-prefix", "out/pn_best_epoch_state.pt", "--export-onnx", "model.onnx"], cwd)

ONNX export (weaver/train.py::onnx): torch 2.13's default exporter is dynamo (needs onnxscript, installed here with
numpy < 2); weaver-core 0.4.x was written for torch's TorchScript exporter, the default before torch 2.9, which
`exporter="legacy"` selects (torch.onnx.export with dynamo=False) -- weaver's own export code either way. The legacy
export drops inputs the network does not use (ParticleNet's pf_vectors); the dynamo export declares the traced
batch 1 as its output shape while computing any batch.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from l1forge.core.artifacts import cache_root

WEAVER_CORE = "weaver-core==0.4.17"
REQUIREMENTS = (WEAVER_CORE, "torch==2.13.0", "onnxscript", "numpy<2")
BUILD_TIMEOUT_S = 900

_RUN = """import sys
if sys.argv[1] == "legacy":
    import functools, torch.onnx
    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
sys.argv = ["weaver"] + sys.argv[2:]
from weaver.train import main
main()
"""


class WeaverUnavailable(RuntimeError):
    """weaver-core's environment cannot be built here (no package index, or a requirement that does not install)."""


def weaver_venv(path: pathlib.Path | None = None) -> pathlib.Path:
    """The virtual environment with weaver-core, built on first use (`READY` marks a finished build); its path.
    WeaverUnavailable (one line: pip's last) where it cannot be built."""
    path = pathlib.Path(path or cache_root() / WEAVER_CORE.replace("==", "-"))
    if (path / "READY").is_file():
        return path
    shutil.rmtree(path, ignore_errors=True)  # an unfinished build
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, text=True)
        pip = subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *REQUIREMENTS], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise WeaverUnavailable(f"pip install {' '.join(REQUIREMENTS)} took over {BUILD_TIMEOUT_S} s") from None
    if pip.returncode:
        lines = [ln for ln in (pip.stderr + pip.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
        last = lines[-1] if lines else f"exit {pip.returncode}"
        raise WeaverUnavailable(f"pip install {' '.join(REQUIREMENTS)} failed: {last}")
    (path / "READY").write_text("\n".join(REQUIREMENTS) + "\n")
    return path


def run_weaver(args: list[str], cwd, venv: pathlib.Path | None = None, exporter: str = "legacy",
               timeout: float = 600) -> str:
    """Run `weaver ARGS` in `cwd` with weaver-core's venv, on CPU; returns its output. exporter: "legacy"
    (torch.onnx.export with dynamo=False) or "default" (torch's default, dynamo in torch 2.13). RuntimeError with the
    last lines of the output if it fails."""
    if exporter not in ("legacy", "default"):
        raise ValueError(f"exporter must be legacy or default, not {exporter!r}")
    venv = venv or weaver_venv()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", _RUN, exporter, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode:
        tail = " | ".join(ln.strip() for ln in out.strip().splitlines()[-3:])
        raise RuntimeError(f"weaver {' '.join(args[:2])} ... failed (exit {proc.returncode}): {tail}")
    return out
