"""Rich progress bars for the CLI: one bar per labelled piece of work, one line per migration."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from engine import Move

FINAL = {"ok": "[green]done[/]", "failed": "[red]failed[/]", "skipped": "[yellow]skipped[/]"}


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        )
        self._lock = threading.Lock()
        self._bars: dict[str, TaskID] = {}
        self._moves: dict[int, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def steps(self, label: str, done: int, total: int) -> None:
        with self._lock:
            bar = self._bars.get(label)
            if bar is None:
                bar = self._bars[label] = self.progress.add_task(label, total=total)
            self.progress.update(bar, completed=done, total=total)

    def move(self, move: Move, stage: str) -> None:
        route = f"{move.vmid} {move.name}: {move.source} → {move.target}"
        with self._lock:
            bar = self._moves.get(move.vmid)
            if bar is None:
                bar = self._moves[move.vmid] = self.progress.add_task(route, total=1)
            final = FINAL.get(stage)
            self.progress.update(
                bar,
                description=f"{route} ({final or stage})",
                completed=1 if final else 0,
            )
