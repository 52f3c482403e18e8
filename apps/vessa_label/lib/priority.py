"""The server's background jobs (training, scoring, batch inference) yield the CPU to the annotators' requests.

MONAI Label runs each of them as a process of its own (``python -m monailabel.interfaces.utils.app -m train``);
on a CPU workstation they would otherwise take the cores a click is waiting for.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

BACKGROUND_JOBS = ("train", "scoring", "batch_infer")
BACKGROUND_NICE = 10


def background_job(argv: Sequence[str] | None = None) -> str | None:
    """The job (``train``, ``scoring``, ``batch_infer``) when ``argv`` (this process's by default) is a process MONAI
    Label started for one, else None (the server itself, a script, a test)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not Path(argv[0]).as_posix().endswith("monailabel/interfaces/utils/app.py"):
        return None
    for flag in ("-m", "--method"):
        if flag in argv[1:-1]:
            job = argv[argv.index(flag) + 1]
            return job if job in BACKGROUND_JOBS else None
    return None


def lower_cpu_priority(nice: int, pid: int | None = None) -> None:
    """Raise the nice value of every thread of process ``pid`` (this one by default) to at least ``nice``.

    Linux keeps a nice value per thread and torch's worker threads may already run, so each thread in
    ``/proc/<pid>/task`` is set; threads started afterwards inherit it. Elsewhere the process's value is set.
    """
    pid = os.getpid() if pid is None else pid
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
