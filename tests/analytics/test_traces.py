"""Trace loaders: the Bitbrains cleaning rule (the simulator's, re-implemented in polars) on tiny
hand-written files, PlanetLab days kept apart, and a smoke test on the real development traces.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from analytics.traces import (
    SCHEMA,
    STEP,
    load_bitbrains,
    load_planetlab,
    planetlab_origin,
)
from pvesim.traces import read_bitbrains

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"

HEADER = [
    "Timestamp [ms]",
    "CPU cores",
    "CPU capacity provisioned [MHZ]",
    "CPU usage [MHZ]",
    "CPU usage [%]",
    "Memory capacity provisioned [KB]",
    "Memory usage [KB]",
    "Disk read throughput [KB/s]",
    "Disk write throughput [KB/s]",
    "Network received throughput [KB/s]",
    "Network transmitted throughput [KB/s]",
]
T = 1_000_200  # a multiple of 300 s, so bucket starts are T + 300 k


def row(t: int, cpu_cap: float, cpu_pct: float, mem_cap: float, mem_use: float) -> list[float]:
    cores = 1 if cpu_cap else 0
    return [t, cores, cpu_cap, cpu_cap * cpu_pct / 100, cpu_pct, mem_cap, mem_use, 0, 0, 0, 0]


def write_bitbrains(root: Path, month: str, vm: int, rows: Sequence[Sequence[float]]) -> Path:
    """A gzipped file in the Bitbrains layout, fields separated by ';' + TAB."""
    folder = root / "bitbrains-rnd" / month
    folder.mkdir(parents=True, exist_ok=True)
    lines = [";\t".join(HEADER)] + [";\t".join(str(v) for v in r) for r in rows]
    path = folder / f"{vm}.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("ascii")))
    return path


# in file order; the grid runs from T (first row, a zero row) to T + 1500 (last row)
QUIRKY = [
    row(T + 600, 1000, 50, 1000, 200),  # bucket T+600: cpu 0.5, mem 0.2
    row(T + 10, 0, 0, 0, 0),  # zero capacity: missing; bucket T is before any usable row
    row(T + 310, 1000, 20, 1000, 100),  # bucket T+300 holds two rows: cpu (0.2 + 0.4) / 2
    row(T + 320, 1000, 40, 1000, 300),  # ... and mem (0.1 + 0.3) / 2
    row(T + 600, 1000, 90, 1000, 900),  # repeated timestamp: the first row (0.5, 0.2) wins
    # bucket T+900 is empty: carried forward from T+600
    row(T + 1210, 1000, 150, 1000, 1500),  # cpu above 100 % is kept; mem saturates at 1.0
    row(T + 1500, 0, 10, 2000, 100),  # CPU capacity 0 alone is enough to be missing
    row(T + 1500, 1000, 10, 2000, 100),  # repeated: the (missing) first row still wins
]
QUIRKY_CPU = [0.3, 0.3, 0.5, 0.5, 1.5, 1.5]
QUIRKY_MEM = [0.2, 0.2, 0.2, 0.2, 1.0, 1.0]


def test_the_cleaning_rule_sorts_dedups_drops_zero_capacity_averages_and_carries_forward(
    tmp_path: Path,
) -> None:
    write_bitbrains(tmp_path, "2013-7", 1, QUIRKY)

    frame = load_bitbrains(tmp_path, months=("2013-7",))

    assert frame.schema == pl.Schema(SCHEMA)
    assert frame["series"].to_list() == ["2013-7/1"] * 6
    assert frame["ts"].to_list() == [T + STEP * k for k in range(6)]
    assert frame["cpu"].to_list() == pytest.approx(QUIRKY_CPU)
    assert frame["mem"].to_list() == pytest.approx(QUIRKY_MEM)


def test_disk_and_network_throughput_are_summed_in_bytes_per_second_and_bucketed_like_cpu(
    tmp_path: Path,
) -> None:
    # read, write, received, transmitted KB/s; a negative reading counts as idle
    io_rows = [
        [*row(T + 10, 1000, 10, 1000, 100)[:7], 1, 3, 10, 20],
        [*row(T + 20, 1000, 10, 1000, 100)[:7], 3, 1, 30, 40],  # same bucket: means of sums
        [*row(T + 30, 0, 0, 0, 0)[:7], 900, 900, 900, 900],  # zero capacity: missing
        [*row(T + 310, 1000, 10, 1000, 100)[:7], -5, 0, 0, 0],
        [*row(T + 910, 1000, 10, 1000, 100)[:7], 2, 2, 1, 1],  # T+600 carried forward
    ]
    write_bitbrains(tmp_path, "2013-7", 1, io_rows)

    frame = load_bitbrains(tmp_path, months=("2013-7",))

    assert frame["disk"].to_list() == pytest.approx([4 * 1024, 0, 0, 4 * 1024])
    assert frame["net"].to_list() == pytest.approx([50 * 1024, 0, 0, 2 * 1024])


def test_planetlab_has_no_memory_disk_or_network(tmp_path: Path) -> None:
    write_planetlab(tmp_path, "20110303", "vm_a", [1] * 288)

    frame = load_planetlab(tmp_path)

    assert frame.select(pl.col("mem", "disk", "net").null_count()).row(0) == (288, 288, 288)


def test_the_cleaning_rule_gives_the_same_numbers_as_the_simulators_reader(
    tmp_path: Path,
) -> None:
    path = write_bitbrains(tmp_path, "2013-7", 1, QUIRKY)

    frame = load_bitbrains(tmp_path, months=("2013-7",))
    series = read_bitbrains(path)

    assert frame["cpu"].to_list() == pytest.approx(list(series.cpu))
    assert series.mem is not None
    assert frame["mem"].to_list() == pytest.approx(list(series.mem))


def test_months_and_ids_select_files_and_name_series_month_slash_id(tmp_path: Path) -> None:
    for month in ("2013-7", "2013-8"):
        for vm in (1, 6, 11):
            write_bitbrains(tmp_path, month, vm, [row(T, 1000, vm, 1000, 100)])

    frame = load_bitbrains(tmp_path, months=("2013-8", "2013-7"), ids=[11, 1])

    assert frame["series"].to_list() == ["2013-7/1", "2013-7/11", "2013-8/1", "2013-8/11"]
    assert frame["cpu"].to_list() == pytest.approx([0.01, 0.11, 0.01, 0.11])


def test_a_file_without_any_usable_row_gives_no_series(tmp_path: Path) -> None:
    write_bitbrains(tmp_path, "2013-7", 1, [row(T, 0, 0, 0, 0), row(T + 300, 0, 0, 0, 0)])
    write_bitbrains(tmp_path, "2013-7", 6, [row(T, 1000, 10, 1000, 100)])

    frame = load_bitbrains(tmp_path, months=("2013-7",))

    assert frame["series"].to_list() == ["2013-7/6"]


def test_a_missing_bitbrains_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Bitbrains traces"):
        load_bitbrains(tmp_path)


def write_planetlab(root: Path, day: str, name: str, values: Sequence[int]) -> None:
    folder = root / "planetlab" / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(f"{v}\n" for v in values), encoding="ascii")


def test_planetlab_days_are_separate_series_each_with_its_own_midnight_origin(
    tmp_path: Path,
) -> None:
    write_planetlab(tmp_path, "20110303", "vm_a", [10] * 288)
    write_planetlab(tmp_path, "20110306", "vm_a", list(range(288)))  # 100..287 kept
    write_planetlab(tmp_path, "20110306", "vm_b", [0] * 288)

    frame = load_planetlab(tmp_path)

    assert frame.schema == pl.Schema(SCHEMA)
    per_series = frame.group_by("series", maintain_order=True).agg(
        pl.len(), pl.col("ts").min().alias("first"), pl.col("ts").diff().max().alias("step")
    )
    assert per_series.rows() == [
        ("20110303/vm_a", 288, 1_299_110_400, 300),  # 2011-03-03 00:00 UTC
        ("20110306/vm_a", 288, 1_299_369_600, 300),  # 2011-03-06 00:00 UTC: not appended
        ("20110306/vm_b", 288, 1_299_369_600, 300),
    ]
    assert planetlab_origin("20110306") == 1_299_369_600
    day2 = frame.filter(pl.col("series") == "20110306/vm_a")["cpu"].to_list()
    assert day2[:3] == pytest.approx([0.0, 0.01, 0.02])
    assert day2[99:] == pytest.approx([v / 100 for v in range(99, 288)])
    assert frame["mem"].null_count() == frame.height


def test_planetlab_days_and_limit_choose_what_is_loaded(tmp_path: Path) -> None:
    for day in ("20110303", "20110306"):
        for name in ("vm_a", "vm_b", "vm_c"):
            write_planetlab(tmp_path, day, name, [1] * 288)

    frame = load_planetlab(tmp_path, days=["20110306"], limit=2)

    assert frame["series"].unique(maintain_order=True).to_list() == [
        "20110306/vm_a",
        "20110306/vm_b",
    ]


def test_a_planetlab_file_without_288_values_is_rejected(tmp_path: Path) -> None:
    write_planetlab(tmp_path, "20110303", "vm_a", [1] * 287)

    with pytest.raises(ValueError, match="287 values"):
        load_planetlab(tmp_path)


def real_traces() -> Path:
    if not (TRACES / "bitbrains-rnd").is_dir() or not (TRACES / "planetlab").is_dir():
        pytest.skip(f"real traces not found at {TRACES} (they live in ../shared/traces)")
    return TRACES


def test_the_real_development_traces_load_on_a_clean_grid_and_match_the_simulator() -> None:
    traces = real_traces()

    bitbrains = load_bitbrains(traces, ids=[1, 41, 131, 211])  # 41 runs flat out above 100 %
    planetlab = load_planetlab(traces, limit=5)

    for frame in (bitbrains, planetlab):
        assert frame.schema == pl.Schema(SCHEMA)
        assert frame.equals(frame.sort("series", "ts"))
        assert (frame["ts"] % STEP).max() == 0
        assert frame.select(pl.col("ts").diff().over("series").drop_nulls().unique()).rows() == [
            (STEP,)
        ]
        assert frame.select(pl.col("cpu").is_between(0.0, 2.0).all()).item()
    assert bitbrains["series"].n_unique() == 8
    assert bitbrains.filter(pl.col("series") == "2013-8/41")["cpu"].max() > 1.0
    assert bitbrains["mem"].is_between(0.0, 1.0).all()
    assert planetlab["series"].n_unique() == 5 * 8
    for month, vm in itertools.product(("2013-7", "2013-8"), (41, 131)):
        series = read_bitbrains(traces / "bitbrains-rnd" / month / f"{vm}.csv.gz")
        ours = bitbrains.filter(pl.col("series") == f"{month}/{vm}")
        assert ours["cpu"].to_list() == pytest.approx(list(series.cpu), abs=1e-12)
        assert series.mem is not None
        assert ours["mem"].to_list() == pytest.approx(list(series.mem), abs=1e-12)
