"""The tagging task's block of summary.json (the paired verdicts of student, baseline and teachers, the scan) and
its report section (data, metrics of every model, ROC curves, the confusion matrix)."""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from l1forge.core.artifacts import read_array
from l1forge.metrics import classification_metrics, confusion, top_vs_qcd_roc
from l1forge.report import EMULATED, png, read_h5, subplots
from l1forge.tasks import base_report
from l1forge.tasks.tagging import TEST_SPLIT

log = logging.getLogger(__name__)

CLASSES = ("g", "q", "w", "z", "t")  # l1forge's generated jets; a user's data names its own (labels.class_names)


def class_names(data: pathlib.Path) -> tuple:
    """The class names of the jet file ``data`` (attribute ``class_names`` of its labels), else CLASSES."""
    import h5py

    try:
        with h5py.File(data, "r") as f:
            names = f["labels"].attrs["class_names"]
    except (OSError, KeyError):
        return CLASSES
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in names)
MODELS = (  # (label, score file relative to the run dir)
    ("GNN teacher", "teachers/gnn/predictions.h5"),
    ("Transformer teacher", "teachers/transformer/predictions.h5"),
    ("Student (QKeras)", "students/student/predictions.h5"),
    ("Baseline", "students/baseline/predictions.h5"),
)


def summary(task) -> dict:
    """The blocks every task has, the student's family and inputs, the paired verdicts and the design-space scan."""
    block = base_report.summary(task)
    run = task.run
    for kind, result in base_report.teacher_results(task).items():
        block["teachers"][kind].update({k: result.get(k) for k in ("onnx_max_abs_diff", "train_jets_per_s")})
    if "student" in block:  # which family, whether it trained on rotated jets, for constituent students how many
        student = run.result("distill.student")
        block["student"].update({k: student[k] for k in ("family", "augment", "n_constituents", "input_word", "jet_word")
                                 if k in student})
        if verdict := _paired(task.data_path, run.student, run.baseline):
            block["student"]["distilled_vs_baseline"] = verdict
        for kind in block.get("teachers", {}):  # is the teacher worth distilling: does it beat the label-trained student?
            if verdict := _paired(task.data_path, run.teacher(kind), run.baseline):
                block["teachers"][kind]["vs_baseline_student"] = verdict
    if scan := run.state.get("scan"):
        block["scan"] = {k: scan["result"][k] for k in ("metric", "points", "front")}
    return block


def _paired(data: pathlib.Path, a: pathlib.Path, b: pathlib.Path) -> dict | None:
    """Model ``a`` minus model ``b`` (directories with predictions.h5) on the same test jets of ``data``, in accuracy
    and top-vs-QCD AUC (metrics.paired_difference: paired bootstrap, verdict "A" = a wins beyond 2 sigma, "B" = b
    wins, else "tie")."""
    from l1forge.metrics import paired_difference

    paths = [a / "predictions.h5", b / "predictions.h5"]
    if not all(p.exists() for p in paths) or not data.exists():
        return None
    labels, split = read_h5(data, "labels", "split")
    test = split == TEST_SPLIT
    a, b = (read_array(p, "logits")[test] for p in paths)
    return {m: paired_difference(labels[test], a, b, class_names(data), m) for m in ("accuracy", "top_vs_qcd_auc")}


def report_context(run_dir: pathlib.Path, block: dict) -> dict:
    """Data table, metrics of every model, ROC curves and the confusion matrix of the test jets."""
    labels = split = None
    if (run_dir / "data/jets.h5").exists():
        labels, split = read_h5(run_dir / "data/jets.h5", "labels", "split")
        labels = labels.astype(np.int64)
    scores = _scores(run_dir, labels, split) if labels is not None else {}
    classes = class_names(run_dir / "data/jets.h5")
    cm_model = EMULATED if EMULATED in scores else "Student (QKeras)"
    return {
        "classes": classes,
        "data_info": block.get("data"),
        "data": _data_section(block.get("data"), labels, split, classes),
        "models": _model_rows(scores, block, classes),
        "student_bits": block.get("student", {}).get("bits"),
        "distillation": block.get("student", {}).get("distilled_vs_baseline"),
        "teacher_verdicts": {k: t["vs_baseline_student"] for k, t in block.get("teachers", {}).items()
                             if t.get("vs_baseline_student")},
        "roc_png": _roc_plot(scores, classes) if scores else None,
        "confusion_model": cm_model,
        "confusion_png": _confusion_plot(*scores[cm_model], classes) if cm_model in scores else None,
    }


def _scores(run_dir: pathlib.Path, labels, split):
    """{model label: (labels, logits)} on test jets for every score file present."""
    test = split == TEST_SPLIT if split is not None and (split == TEST_SPLIT).any() else slice(None)
    out = {}
    for name, rel in MODELS:
        path = run_dir / rel
        if not path.exists():
            continue
        (logits,) = read_h5(path, "logits")
        if len(logits) != len(labels):
            log.warning("%s has %d rows, data has %d: skipped", rel, len(logits), len(labels))
            continue
        out[name] = (labels[test], logits[test])
    emu = run_dir / "emulation/outputs.h5"
    if emu.exists():
        logits, index = read_h5(emu, "emulator", "index")
        out[EMULATED] = (labels[index], logits)
    return out


def _roc_plot(scores, classes) -> str:
    fig, ax = subplots((7, 5.5))
    for name, (y, logits) in scores.items():
        eff, rej = top_vs_qcd_roc(y, logits, classes)
        if len(eff):
            ax.plot(eff, rej, label=name, ls="--" if name == EMULATED else "-")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Signal efficiency (t)")
    ax.set_ylabel("Background rejection 1/$\\varepsilon_B$ (g+q)")
    ax.legend(fontsize="small")
    return png(fig)


def _confusion_plot(y, logits, classes) -> str:
    c = confusion(y, logits, len(classes))
    fig, ax = subplots((7.5, 6))
    im = ax.imshow(c, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(c):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=12,
                color="white" if v > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.minorticks_off()
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return png(fig)


def _data_section(data: dict | None, labels, split, classes):
    """Rows (class, train, val, test, total) from the data file, else from summary."""
    if labels is not None:
        parts = [labels[split == s] for s in range(3)] if split is not None else []
        rows = [[c] + [int((p == k).sum()) for p in parts] + [int((labels == k).sum())]
                for k, c in enumerate(classes)]
        return {"columns": ["train", "val", "test", "total"] if parts else ["total"], "rows": rows}
    if data and data.get("per_class"):
        pc = data["per_class"]
        pc = pc if isinstance(pc, dict) else dict(zip(classes, pc))
        return {"columns": ["total"], "rows": [[c, n] for c, n in pc.items()]}
    return None


def _model_rows(scores, task, classes):
    """Metrics table rows, with parameter counts from the summary where known."""
    student = task.get("student", {}).get("params")
    params = {
        "GNN teacher": task.get("teachers", {}).get("gnn", {}).get("params"),
        "Transformer teacher": task.get("teachers", {}).get("transformer", {}).get("params"),
        "Student (QKeras)": student,
        "Baseline": student,  # the same network, trained on labels alone
        EMULATED: student,
    }
    return [{"name": n, "params": params.get(n), **classification_metrics(y, lg, classes)}
            for n, (y, lg) in scores.items()]
