"""Readers never take the write lock of a current history file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from analytics import Backoff, Store


def test_a_reader_of_a_current_file_works_while_another_process_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "history.duckdb"
    Store(path).migrate()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print('open', flush=True); time.sleep(5)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        # a fresh Store has not opened the file yet; a write open would fail here, back off for
        # a second and raise StoreLockedError
        frame = Store(path, backoff=Backoff(deadline=1.0)).read("SELECT 42 AS answer")
        assert frame["answer"].to_list() == [42]
    finally:
        holder.kill()
        holder.wait()
