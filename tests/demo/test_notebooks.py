"""The analysis notebooks run top to bottom on the demo's history and are stored without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.demo.conftest import PROJECT, DemoRun

NOTEBOOKS = PROJECT / "notebooks"
NAMES = ("history.ipynb", "capacity.ipynb")
KERNEL = "proxflow-test"


def kernel_manager(kernels: Path, data_dir: Path) -> KernelManager:
    """A kernel on this interpreter (the project's virtualenv under `make test`), whatever
    kernels the machine has installed, reading the history in `data_dir`."""
    spec = kernels / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "proxflow (test)",
                "language": "python",
                "env": {"PROXFLOW_DATA": str(data_dir), "PYTHONPATH": str(PROJECT)},
            }
        )
    )
    return KernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)])
    )


def run(nb: nbformat.NotebookNode, data_dir: Path, kernels: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        km=kernel_manager(kernels, data_dir),
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # Jupyter starts in notebooks/
    )
    # raises CellExecutionError naming the cell and its error; stops the kernel either way
    client.execute(cleanup_kc=True)
    return nb


def executed(name: str, demo_run: DemoRun, kernels: Path) -> nbformat.NotebookNode:
    assert demo_run.code == 0, demo_run.output[-3000:]
    return run(nbformat.read(NOTEBOOKS / name, as_version=4), demo_run.data_dir, kernels)


def outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_runs_on_the_demo_history_and_draws_svg_charts(
    name: str, demo_run: DemoRun, tmp_path: Path
) -> None:
    nb = executed(name, demo_run, tmp_path / "kernels")
    shown = outputs(nb)
    assert not [o for o in shown if o.get("output_type") == "error"]
    svgs = [o["data"]["image/svg+xml"] for o in shown if "image/svg+xml" in o.get("data", {})]
    assert svgs and all("<svg" in s and "no data" not in s for s in svgs)
    tables = [o for o in shown if "text/html" in o.get("data", {})]
    assert tables  # polars frames shown as tables


@pytest.mark.slow
def test_a_data_directory_without_history_is_named_with_how_to_make_one(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / "history.ipynb", as_version=4)
    nb.cells = [next(cell for cell in nb.cells if cell.cell_type == "code")]  # the setup cell
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CellExecutionError) as failed:
        run(nb, empty, tmp_path / "kernels")
    assert f"no history at {empty / 'history.duckdb'}" in str(failed.value)
    assert "make demo" in str(failed.value) and "PROXFLOW_DATA" in str(failed.value)


@pytest.mark.parametrize("name", NAMES)
def test_the_stored_notebook_carries_no_outputs_or_execution_counts(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.cells[0].cell_type == "markdown" and "PROXFLOW_DATA" in nb.cells[0].source
