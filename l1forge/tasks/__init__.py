"""The tasks l1forge runs, one module each: every module here that defines ``TASK`` (a ``base.Task`` subclass).

Adding a task is adding a module (and, beside it, ``<task>_<part>.py`` modules for its parts, which the search
skips: ``<task>_report.py`` for its summary block and report section, so that matplotlib loads only when a report is
written; ``tagging_scan.py`` for the tagging design-space scan); neither the runner, the configuration nor another
task changes.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def registry() -> dict:
    """{task name: task class}, in alphabetical order of the names."""
    tasks = {}
    for info in pkgutil.iter_modules(__path__):
        if "_" in info.name:  # a part of a task (<task>_report, <task>_scan), not a task
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "TASK"):
            tasks[module.TASK.name] = module.TASK
    return dict(sorted(tasks.items()))


def task_class(name: str):
    """The task class called ``name``; ValueError naming the known tasks otherwise."""
    tasks = registry()
    if name not in tasks:
        raise ValueError(f"unknown task '{name}' (choose from {', '.join(tasks)}, or all)")
    return tasks[name]
