"""The capacity report opens offline in a real browser and its plots paint pixels.

Rendered headless with Chromium when it is installed (skipped with a message otherwise): once
as written and once with its plots removed; the plots must change the picture substantially.
Name resolution is disabled, so anything the page tried to fetch would be missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.demo.conftest import DemoRun

pytestmark = pytest.mark.slow
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless browser found (looked for {', '.join(BROWSERS)})")


def screenshot(exe: str, page: Path, out: Path) -> bytes:
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--screenshot={out}",
            "--window-size=1200,4000",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.read_bytes()


def ink(png: bytes) -> int:
    """Bytes of pixel data that are not white, from the PNG's decompressed scanlines."""
    chunks, pos = [], 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            chunks.append(png[pos + 8 : pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return sum(1 for b in raw if b not in (0, 255))


def test_the_report_renders_offline_with_its_plots(demo_run: DemoRun, tmp_path: Path) -> None:
    exe = browser()
    page = demo_run.data_dir / "capacity-report.html"
    html = page.read_text()
    bare = tmp_path / "bare.html"
    # the same page with every plot emptied but its box kept, so the layout does not move
    bare.write_text(re.sub(r"<svg([^>]*)>.*?</svg>", r"<svg\1></svg>", html, flags=re.DOTALL))
    with_plots = ink(screenshot(exe, page, tmp_path / "with.png"))
    without = ink(screenshot(exe, bare, tmp_path / "without.png"))
    assert with_plots > without * 1.2, (with_plots, without)
