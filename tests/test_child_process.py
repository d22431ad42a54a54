"""Stages in child processes (vLLM, DeepSpeed): failures name the child's error; an interrupted parent
leaves nothing running behind it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from irpo.child import StageProcessError, run_child


def test_failure_reports_the_childs_exception_line_first(tmp_path):
    script = (
        "import sys; print('progress 1/2'); print('[rank1]: ValueError: bad pair in row 7', flush=True); sys.exit(3)"
    )
    with pytest.raises(StageProcessError) as failure:
        run_child([sys.executable, "-c", script], tmp_path / "child.log", what="test stage")
    first_line = str(failure.value).splitlines()[0]
    assert first_line == "test stage failed (exit code 3): ValueError: bad pair in row 7"
    assert "progress 1/2" in (tmp_path / "child.log").read_text()


def test_interrupting_the_parent_stops_the_childs_own_children(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    # A child that starts a grandchild and waits on it, as torchrun waits on its ranks.
    script = (
        f"import subprocess, time; p = subprocess.Popen(['sleep', '300']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); p.wait()"
    )

    def interrupt_once_started() -> None:  # Ctrl-C, once the grandchild exists
        while not pid_file.exists() or not pid_file.read_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_child([sys.executable, "-c", script], tmp_path / "child.log", what="test stage")
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"grandchild {grandchild} still running after the parent was interrupted")
