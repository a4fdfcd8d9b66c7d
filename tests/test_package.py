"""The installable package: one top-level name, imports that run one way, artifacts others can read."""

import ast
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

from l1forge.core.artifacts import write_arrays_atomic, write_json_atomic

REPO = pathlib.Path(__file__).resolve().parents[1]
# floor of each package (l1forge/ is the roof: cli, runner, config, report, tasks): a module imports only from its
# floor or below
FLOORS = {"core": 0, "quantize": 0, "graph": 1, "events": 2, "teachers": 3, "students": 4, "firmware": 5,
          "emulation": 6, "rtl": 7}
ORCHESTRATION = 8
FOLDERS = {name: name for name in FLOORS}


def test_wheel_holds_one_top_level_package(tmp_path):
    """Build the wheel from a copy of the working tree (no stale build/ directory) and list its top level."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("l1forge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"l1forge", wheel.name.split("-py")[0] + ".dist-info"}
    for module in ("core/artifacts.py", "graph/ir.py", "graph/ops.py", "rtl/lower.py", "events/jets.py", "teachers/train.py", "students/distill.py", "quantize/fixed.py",
                   "firmware/hls.py", "firmware/calibration_points.json", "emulation/emulator.py", "tasks/tagging.py", "templates/report.html.j2"):
        assert f"l1forge/{module}" in names


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "l1forge":
        return None
    return FLOORS.get(parts[1], ORCHESTRATION) if len(parts) > 1 else ORCHESTRATION


def _sources():
    for name, folder in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            yield path, FLOORS[name]
    for path in (REPO / "l1forge").rglob("*.py"):
        yield path, ORCHESTRATION


def test_imports_run_one_way():
    """Stages import only lower floors; nothing imports the old top-level names (events, firmware, ...)."""
    wrong = []
    for path, floor in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for module in modules:
                if module.split(".")[0] in FOLDERS:
                    wrong.append(f"{path.relative_to(REPO)}: top-level import '{module}'")
                target = _floor(module)
                if target is not None and target > floor and floor != ORCHESTRATION:
                    wrong.append(f"{path.relative_to(REPO)} (floor {floor}) imports {module} (floor {target})")
    assert not wrong, "\n".join(wrong)


def test_no_task_imports_another():
    """A task's modules (<task>.py, its stages; <task>_<part>.py, e.g. its summary and report) import no other task's:
    what two tasks share lives on a lower floor, or in base.py / base_report.py."""
    wrong = []
    for path in (REPO / "l1forge" / "tasks").glob("*.py"):
        allowed = {"base", path.stem.split("_")[0]}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            wrong += [f"{path.name} imports {name}" for name in names
                      if name.startswith("l1forge.tasks.") and name.split(".")[2].split("_")[0] not in allowed]
    assert not wrong, "\n".join(wrong)


def test_emulator_reads_the_graph_without_hls4ml():
    code = "import sys, l1forge.emulation.emulator; print(any(m.split('.')[0] in ('hls4ml', 'tensorflow') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_artifacts_get_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        files = [write_json_atomic(tmp_path / "summary.json", {"a": 1}),
                 write_arrays_atomic(tmp_path / "x.h5", {"x": [1, 2]})]
        plain = tmp_path / "plain"
        plain.write_text("")
    finally:
        os.umask(old)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
