"""Worker processes that end with the process that started them.

joblib's loky workers outlive a parent killed with SIGKILL (nothing runs in a killed process to
stop them), and each holds a copy of the data and a model: ~550 MB apiece for an MNIST fold. A
task that runs in a worker calls :func:`exit_with_parent` first; a daemon thread then checks twice
a second whether the worker was re-parented (its parent died) and ends the worker at once. Only
workers call it: the main process may outlive its shell on purpose (nohup).
"""
from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]

_watching = False
_lock = threading.Lock()


def exit_with_parent(interval: float = 0.5) -> None:
    """End this process soon after its parent process ends (idempotent; cheap to call per task)."""
    global _watching
    if threading.current_thread() is not threading.main_thread():
        return  # a task on joblib's threading backend runs in this very process: never end it
    with _lock:
        if _watching:
            return
        parent = os.getppid()
        if parent <= 1:  # already an orphan, or started by init: nothing to watch
            return
        _watching = True

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="pseudolabel-exit-with-parent", daemon=True).start()
