"""Running a stage in a child process: its output streams through and into a log; a failure names it.

The vLLM sampler and the DeepSpeed trainer run this way, so that the GPU memory (and every thread and
rank they start) is gone when they return, and the loop's own process never imports either library.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import irpo


class StageProcessError(RuntimeError):
    pass


def project_pythonpath(env: Mapping[str, str]) -> str:
    """PYTHONPATH that lets child processes (the DeepSpeed ranks) import this checkout of irpo, installed or not."""
    root = str(Path(irpo.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)


def run_child(
    command: list[str], log_path: Path, what: str, env: dict[str, str] | None = None, tail_lines: int = 40
) -> None:
    """Runs `command`, echoing its output to stderr and `log_path`; raises with its last lines if it fails."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    cause = None  # the child's last exception line: launchers (torchrun) bury it under their own report
    partial = ""
    with log_path.open("w") as log_file:
        log_file.write("$ " + " ".join(command) + "\n")
        log_file.flush()
        # Its own process group, so that stopping it also stops what it started (torchrun's ranks, vLLM's workers).
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        output = process.stdout
        assert isinstance(output, io.BufferedReader)  # stdout=PIPE at the default buffering
        try:
            while chunk := output.read1(65536):
                text = chunk.decode(errors="replace")
                sys.stderr.write(text)  # progress bars use \r, so pass bytes through as they come
                sys.stderr.flush()
                log_file.write(text)
                lines = (partial + text).replace("\r", "\n").split("\n")
                partial = lines.pop()
                tail.extend(line for line in lines if line.strip())
                cause = next((m.group(1) for m in map(_EXCEPTION_LINE.search, reversed(lines)) if m), cause)
            returncode = process.wait()
        except BaseException:  # Ctrl-C, or Slurm's pre-timeout signal: do not leave ranks or engines behind
            _stop_group(process)
            raise
    if returncode != 0:
        if partial.strip():
            tail.append(partial)
        raise StageProcessError(
            f"{what} failed (exit code {returncode}): {cause or 'see its output below'}\n"
            f"full log: {log_path}\n" + "\n".join(f"  | {line}" for line in tail)
        )


def _stop_group(process: subprocess.Popen, grace_seconds: float = 10.0) -> None:
    """SIGTERM to the child's whole process group; SIGKILL to whatever is left once the child has
    exited or the grace period is over."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?!.*ChildFailedError)[\w.]*(?:Error|Exception)\b: .*)$")
