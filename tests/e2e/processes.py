"""Processes the end-to-end tests start: logged, bounded, and stopped with all they started.

Each runs in a session of its own from the project root, its output in a log file whose tail
a timed-out wait shows. Stopping signals the process and every descendant (flow runs start in
sessions of their own), each only while it is still the process first seen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, *logs: Path, every: float = 0.25
) -> Any:
    """Poll `check` every `every` seconds until it returns something truthy; fail naming `what`
    (and the logs' tails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- last lines of {log.name} ---\n{tail_of(log)}" for log in logs)
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{tails}")
        time.sleep(every)


def tail_of(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (flow runs start in sessions of their own)."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _started_at(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields is not None else None  # field 22 of stat: start time


def _kill(family: dict[int, str | None], sig: signal.Signals) -> None:
    """Signal each process that is still the one seen (a pid may be reused once it exits)."""
    for pid, started in family.items():
        if started is not None and _started_at(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


@dataclass
class Processes:
    """Background processes of one fixture; `stop_all` ends them and whatever they started."""

    logs: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str | Path, env: Mapping[str, str] | None = None) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(a) for a in args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(popen)
        return Proc(popen, log)

    def stop_all(self) -> None:
        for popen in reversed(self.started):
            stop(popen)


@dataclass(frozen=True)
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path

    def logged(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")


def stop(popen: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process and its descendants, SIGKILL whatever is left after `grace` s."""
    if popen.poll() is not None:
        return
    family = {pid: _started_at(pid) for pid in [popen.pid, *descendants(popen.pid)]}
    _kill(family, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=grace)
    if popen.poll() is None:  # still there: take whatever it started meanwhile too
        family |= {p: _started_at(p) for p in descendants(popen.pid) if p not in family}
    _kill(family, signal.SIGKILL)
    popen.wait(timeout=10)


def run(args: list[str | Path], env: Mapping[str, str], timeout: float = 180) -> str:
    """Run a command to its end from the project root; fail with its output if it fails."""
    try:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(map(str, args))} did not finish within {timeout:g} s: {exc.output}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{output}"
    return output
