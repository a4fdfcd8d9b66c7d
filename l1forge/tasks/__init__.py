"""The tasks l1forge runs, one module each: every module here that defines ``TASK`` (a ``base.Task`` subclass).

Adding a task is adding a module (and, for its own summary block and report section, ``<task>_report.py`` beside
it, which the search skips: the report's matplotlib loads only when a report is written); neither the runner, the
configuration nor another task changes.
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
        if info.name.endswith("_report"):
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
