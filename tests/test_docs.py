"""The documentation site builds with every link and anchor resolved (mkdocs --strict)."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", REPO / "mkdocs.yml",
                          "-d", tmp_path / "site"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "site" / "hardware" / "index.html").exists()
