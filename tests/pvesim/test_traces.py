"""Trace readers (pvesim.traces) and trace replay (pvesim.load.TraceSource, make_source)."""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvesim.load import (
    TRACE_NET_IDLE,
    TRACE_NET_PER_CPU,
    LoadSource,
    SyntheticSource,
    TraceSource,
    make_source,
)
from pvesim.scenario import SyntheticLoad, TraceLoad
from pvesim.traces import (
    TraceSeries,
    load_series,
    read_bitbrains,
    read_planetlab,
    resolve_series,
)

HEADER = (
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
)
T0 = 1_375_308_000  # a multiple of 300 s, like the August 2013 files
ORIGIN = 1_795_000_000.0
PLANET_SERIES = "20110303/146-179_surfsnel_dsl_internl_net_root"


# a row is (seconds after T0, CPU %, memory KB used, memory KB capacity); CPU capacity is
# 2000 MHz unless memory capacity is 0, mimicking the powered-off rows of the real files
Row = tuple[float, float, float, float]


def write_bitbrains(path: Path, rows: Iterable[Row]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [";\t".join(HEADER)]
    for dt, pct, mem_used, mem_cap in rows:
        cap = 2000.0 if mem_cap else 0.0
        cores = 2 if mem_cap else 0
        fields = (T0 + dt, cores, cap, cap * pct / 100, pct, mem_cap, mem_used, 0, 1.0, 3.5, 2.25)
        lines.append(";\t".join(str(f) for f in fields))
    with gzip.open(path, "wt", encoding="ascii", newline="") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def write_planetlab(path: Path, values: Iterable[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{v}\n" for v in values), encoding="ascii")
    return path


def series(cpu: Iterable[float], mem: Iterable[float] | None = None) -> TraceSeries:
    return TraceSeries(step=300.0, cpu=tuple(cpu), mem=None if mem is None else tuple(mem))


def trace_spec(**kw: object) -> TraceLoad:
    fields: dict[str, object] = {"model": "trace", "dataset": "planetlab", "series": "d/vm"}
    fields.update(kw)
    return TraceLoad.model_validate(fields)


# --- Bitbrains cleaning rule --------------------------------------------------------------


def test_bitbrains_timestamps_are_epoch_seconds_resampled_to_five_minutes(tmp_path: Path) -> None:
    path = write_bitbrains(tmp_path / "1.csv.gz", [(0, 10, 1, 4), (300, 20, 2, 4), (600, 30, 3, 4)])
    s = read_bitbrains(path)
    assert s.step == 300.0
    assert s.cpu == pytest.approx((0.1, 0.2, 0.3))
    assert s.mem == pytest.approx((0.25, 0.5, 0.75))


def test_bitbrains_rows_with_zero_capacity_count_as_missing_not_zero(tmp_path: Path) -> None:
    rows: list[Row] = [(0, 40, 2, 4), (300, 0, 0, 0), (600, 0, 0, 0), (900, 60, 3, 4)]
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", rows))
    assert s.cpu == pytest.approx((0.4, 0.4, 0.4, 0.6))
    assert s.mem == pytest.approx((0.5, 0.5, 0.5, 0.75))


def test_bitbrains_row_with_only_one_capacity_at_zero_is_missing_too(tmp_path: Path) -> None:
    # seen in the July files: cores and CPU capacity 0 while memory capacity is still set
    path = write_bitbrains(tmp_path / "1.csv.gz", [(0, 40, 2, 4), (600, 60, 3, 4)])
    with gzip.open(path, "at", encoding="ascii") as fh:
        fh.write(f"{T0 + 300};\t0;\t0.0;\t0.0;\t0.0;\t4.0;\t1.0;\t0;\t0;\t0;\t0\n")
        fh.write(f"{T0 + 900};\t2;\t2000.0;\t0.0;\t0.0;\t0.0;\t0.0;\t0;\t0;\t0;\t0\n")
    s = read_bitbrains(path)
    assert s.cpu == pytest.approx((0.4, 0.4, 0.6, 0.6))
    assert s.mem == pytest.approx((0.5, 0.5, 0.75, 0.75))


def test_bitbrains_samples_sharing_a_bucket_are_averaged(tmp_path: Path) -> None:
    rows: list[Row] = [(10, 10, 1, 4), (100, 30, 3, 4), (299, 20, 2, 4), (300, 50, 0, 4)]
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", rows))
    assert s.cpu == pytest.approx((0.2, 0.5))
    assert s.mem == pytest.approx((0.5, 0.0))


def test_bitbrains_rows_are_sorted_and_a_repeated_timestamp_keeps_its_first_row(
    tmp_path: Path,
) -> None:
    rows: list[Row] = [(600, 30, 1, 4), (0, 10, 1, 4), (300, 20, 1, 4), (300, 90, 1, 4)]
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", rows))
    assert s.cpu == pytest.approx((0.1, 0.2, 0.3))


def test_bitbrains_gaps_carry_the_previous_value_and_leading_gaps_take_the_first(
    tmp_path: Path,
) -> None:
    rows: list[Row] = [(0, 0, 0, 0), (300, 0, 0, 0), (600, 20, 1, 4), (1800, 40, 2, 4)]
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", rows))
    assert s.cpu == pytest.approx((0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.4))
    assert s.mem == pytest.approx((0.25,) * 6 + (0.5,))


def test_bitbrains_grid_is_aligned_to_whole_five_minutes_of_epoch_time(tmp_path: Path) -> None:
    # 176 s past a grid line, then 299 s later: same spacing as the real files, two buckets
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", [(176, 10, 1, 4), (475, 30, 1, 4)]))
    assert s.cpu == pytest.approx((0.1, 0.3))


def test_bitbrains_cpu_above_100_percent_is_kept_but_memory_above_capacity_saturates_at_one(
    tmp_path: Path,
) -> None:
    s = read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", [(0, 154.5, 5, 4), (300, 50, 2, 4)]))
    assert s.cpu == pytest.approx((1.545, 0.5))
    assert s.mem == pytest.approx((1.0, 0.5))


def test_bitbrains_memory_is_relative_to_the_capacity_of_its_own_row(tmp_path: Path) -> None:
    # a VM resized from 4 to 8 GB keeps using 2 GB: a quarter, not half, after the resize
    rows: list[Row] = [(0, 10, 2, 4), (300, 10, 2, 8)]
    assert read_bitbrains(write_bitbrains(tmp_path / "1.csv.gz", rows)).mem == pytest.approx(
        (0.5, 0.25)
    )


def test_bitbrains_file_with_only_missing_rows_is_rejected(tmp_path: Path) -> None:
    path = write_bitbrains(tmp_path / "1.csv.gz", [(0, 0, 0, 0), (300, 0, 0, 0)])
    with pytest.raises(ValueError, match="zero capacity"):
        read_bitbrains(path)


def test_a_file_that_is_not_bitbrains_is_rejected_with_its_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("time;cpu\n1;2\n")
    with pytest.raises(ValueError, match="not a Bitbrains trace"):
        read_bitbrains(path)


# --- PlanetLab ----------------------------------------------------------------------------


def test_planetlab_percentages_become_cpu_fractions_without_memory(tmp_path: Path) -> None:
    values = [i % 100 for i in range(288)]
    s = read_planetlab(write_planetlab(tmp_path / "day" / "vm", values))
    assert s.step == 300.0
    assert s.mem is None
    assert s.cpu == pytest.approx(tuple(v / 100 for v in values))
    assert s.duration == 86_400.0


def test_planetlab_file_that_is_not_one_day_of_integers_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="288"):
        read_planetlab(write_planetlab(tmp_path / "short", [5] * 10))
    (tmp_path / "text").write_text("hello\n" * 288)
    with pytest.raises(ValueError, match="integers"):
        read_planetlab(tmp_path / "text")


def test_parsed_series_are_cached_so_guests_sharing_a_series_parse_it_once(
    tmp_path: Path,
) -> None:
    path = write_planetlab(tmp_path / "vm", [1] * 288)
    assert read_planetlab(path) is read_planetlab(str(path))
    bb = write_bitbrains(tmp_path / "1.csv.gz", [(0, 10, 1, 4)])
    assert read_bitbrains(bb) is read_bitbrains(bb)
    assert read_bitbrains(bb).cpu_area is read_bitbrains(bb).cpu_area


# --- locating series ----------------------------------------------------------------------


def test_series_names_resolve_to_the_dataset_layout(tmp_path: Path) -> None:
    bb = write_bitbrains(tmp_path / "bitbrains-rnd" / "2013-8" / "1.csv.gz", [(0, 10, 1, 4)])
    pl = write_planetlab(tmp_path / "planetlab" / "20110303" / "vm_a", [1] * 288)
    assert resolve_series(tmp_path, "bitbrains", "2013-8/1") == bb
    assert resolve_series(tmp_path, "planetlab", "20110303/vm_a") == pl
    assert load_series(tmp_path, "planetlab", "20110303/vm_a").cpu[0] == 0.01


def test_a_missing_series_names_the_dataset_series_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        resolve_series(tmp_path, "bitbrains", "2013-8/7")
    assert "bitbrains" in str(err.value)
    assert "'2013-8/7'" in str(err.value)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_series(tmp_path / "nowhere", "planetlab", "20110303/vm")


@pytest.mark.parametrize("bad", ["2013-8", "2013-8/1/2", "../1", "2013-8/..", "/1", ""])
def test_malformed_series_names_are_rejected_before_touching_the_disk(
    tmp_path: Path, bad: str
) -> None:
    with pytest.raises(ValueError, match="write it as"):
        resolve_series(tmp_path, "bitbrains", bad)


# --- replay -------------------------------------------------------------------------------


def test_replay_starts_at_the_offset_and_interpolates_linearly_between_points() -> None:
    s = series([0.0, 0.4, 0.8, 0.2])
    src = TraceSource(trace_spec(), s, seed=1, vmid=100, origin=ORIGIN)
    assert src.cpu(ORIGIN) == 0.0
    assert src.cpu(ORIGIN + 150) == pytest.approx(0.2)
    assert src.cpu(ORIGIN + 600) == pytest.approx(0.8)
    assert src.cpu(ORIGIN + 675) == pytest.approx(0.65)
    shifted = TraceSource(trace_spec(offset_hours=600 / 3600), s, 1, 100, ORIGIN)
    assert shifted.cpu(ORIGIN) == pytest.approx(0.8)


def test_replay_wraps_around_forwards_and_backwards_in_time() -> None:
    s = series([0.0, 0.4, 0.8, 0.2])
    src = TraceSource(trace_spec(), s, seed=1, vmid=100, origin=ORIGIN)
    assert src.cpu(ORIGIN + 1050) == pytest.approx(0.1)  # last point runs into the first
    assert src.cpu(ORIGIN + 1200) == pytest.approx(0.0)
    assert src.cpu(ORIGIN - 300) == pytest.approx(0.2)  # history before the start
    assert src.cpu(ORIGIN - 150) == pytest.approx(0.1)
    assert src.cpu(ORIGIN - 365 * 86_400 + 300) == pytest.approx(0.4)


def test_replay_is_continuous_at_the_origin_even_for_vanishingly_small_times() -> None:
    # positions a hair below zero must land on the last segment's end, not a loop off
    src = TraceSource(trace_spec(), series([0.2, 0.6, 0.4]), seed=1, vmid=100, origin=0.0)
    for t in (-1e-300, -1e-17, 0.0, 1e-300):
        assert src.cpu(t) == pytest.approx(0.2)
        assert src.net_bytes(t, 1.0) == pytest.approx(src.net_rate(0.5), rel=1e-3)
        assert src.net_bytes(-1.0, t) == pytest.approx(src.net_rate(-0.5), rel=1e-3)


@given(st.floats(-1e8, 1e8), st.integers(-50, 50))
def test_replay_repeats_every_pass_of_the_series(dt: float, loops: int) -> None:
    s = series([0.1, 0.9, 0.5, 0.3, 0.7], [0.2, 0.4, 0.6, 0.8, 1.0])
    src = TraceSource(trace_spec(offset_hours=3.0), s, seed=1, vmid=100, origin=ORIGIN)
    t = ORIGIN + dt
    assert 0.1 <= src.cpu(t) <= 0.9
    assert src.cpu(t) == pytest.approx(src.cpu(t + loops * s.duration), abs=1e-6)
    assert src.mem(t) == pytest.approx(src.mem(t + loops * s.duration), abs=1e-6)


def test_memory_comes_from_the_trace_when_it_has_memory() -> None:
    s = series([0.1, 0.1], [0.3, 0.5])
    src = TraceSource(trace_spec(mem=0.9), s, seed=1, vmid=100, origin=ORIGIN)
    assert src.mem(ORIGIN) == pytest.approx(0.3)
    assert src.mem(ORIGIN + 150) == pytest.approx(0.4)


def test_memory_without_a_trace_is_the_spec_fraction_with_small_noise() -> None:
    src = TraceSource(trace_spec(mem=0.6), series([0.1] * 288), seed=1, vmid=100, origin=ORIGIN)
    values = [src.mem(ORIGIN + 60 * i) for i in range(2000)]
    assert all(0.5 < v < 0.7 for v in values)
    assert sum(values) / len(values) == pytest.approx(0.6, abs=0.005)
    assert len(set(values)) > 1000


def test_same_seed_and_vmid_give_the_same_values_and_other_vmids_differ() -> None:
    s = series([0.1 * (i % 7) for i in range(288)])
    spec = trace_spec(mem=0.5, offset_hours=2.5)
    a = TraceSource(spec, s, seed=3, vmid=100, origin=ORIGIN)
    b = TraceSource(spec, s, seed=3, vmid=100, origin=ORIGIN)
    c = TraceSource(spec, s, seed=3, vmid=101, origin=ORIGIN)
    times = [ORIGIN + 37.0 * i for i in range(-500, 500)]
    assert [(a.cpu(t), a.mem(t), a.net_bytes(ORIGIN, t)) for t in times] == [
        (b.cpu(t), b.mem(t), b.net_bytes(ORIGIN, t)) for t in times
    ]
    assert [a.cpu(t) for t in times] == [c.cpu(t) for t in times]  # same trace, same CPU
    assert [a.mem(t) for t in times] != [c.mem(t) for t in times]  # own memory noise


def test_traffic_follows_cpu_with_an_idle_floor() -> None:
    src = TraceSource(trace_spec(), series([0.0, 1.0]), seed=1, vmid=100, origin=ORIGIN)
    assert src.net_rate(ORIGIN) == TRACE_NET_IDLE
    assert src.net_rate(ORIGIN + 300) == TRACE_NET_IDLE + TRACE_NET_PER_CPU
    assert 0 < src.disk_rate(ORIGIN) < src.disk_rate(ORIGIN + 300)


def test_byte_counters_integrate_the_rates_and_never_decrease() -> None:
    s = series([0.05, 0.9, 0.0, 0.4, 1.0, 0.2, 0.6])
    src = TraceSource(trace_spec(offset_hours=0.3), s, seed=1, vmid=100, origin=ORIGIN)
    start = ORIGIN - 5000.0
    prev_net = prev_disk = 0.0
    for i in range(1, 400):
        t1 = start + 17.0 * i
        net, disk = src.net_bytes(start, t1), src.disk_bytes(start, t1)
        assert net >= prev_net and disk >= prev_disk
        prev_net, prev_disk = net, disk
    # against a fine midpoint sum of the rate, across several wrap-arounds
    t0, t1, n = ORIGIN - 4321.0, ORIGIN + 9876.0, 20_000
    dt = (t1 - t0) / n
    riemann = sum(src.net_rate(t0 + (k + 0.5) * dt) for k in range(n)) * dt
    assert src.net_bytes(t0, t1) == pytest.approx(riemann, rel=1e-4)
    assert src.net_bytes(t1, t0) == 0.0
    assert src.disk_bytes(t0, t0) == 0.0


# --- make_source --------------------------------------------------------------------------


def test_make_source_builds_a_synthetic_source_without_a_traces_directory() -> None:
    src = make_source(
        SyntheticLoad.model_validate({}), seed=1, vmid=100, origin=ORIGIN, traces_dir=None
    )
    assert isinstance(src, SyntheticSource)


def test_make_source_asks_for_a_traces_directory_when_a_trace_is_replayed_without_one() -> None:
    with pytest.raises(ValueError, match="--traces DIR"):
        make_source(trace_spec(), seed=1, vmid=100, origin=ORIGIN, traces_dir=None)


def test_make_source_replays_a_trace_from_the_traces_directory(tmp_path: Path) -> None:
    write_planetlab(tmp_path / "planetlab" / "20110303" / "vm_a", range(0, 288))
    write_bitbrains(tmp_path / "bitbrains-rnd" / "2013-8" / "6.csv.gz", [(0, 30, 3, 4)])
    spec = trace_spec(series="20110303/vm_a", offset_hours=1.0)
    src: LoadSource = make_source(spec, seed=1, vmid=100, origin=ORIGIN, traces_dir=tmp_path)
    assert isinstance(src, TraceSource)
    assert src.cpu(ORIGIN) == pytest.approx(0.12)
    bb = trace_spec(dataset="bitbrains", series="2013-8/6")
    assert make_source(bb, 1, 100, ORIGIN, tmp_path).mem(ORIGIN) == pytest.approx(0.75)
    with pytest.raises(FileNotFoundError, match="planetlab series '20110303/vm_b'"):
        make_source(trace_spec(series="20110303/vm_b"), 1, 100, ORIGIN, tmp_path)


# --- the real traces ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def traces_dir() -> Path:
    env = os.environ.get("PROXFLOW_TRACES")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "traces"
    if not (path / "bitbrains-rnd").is_dir() or not (path / "planetlab").is_dir():
        pytest.skip(f"real traces not found at {path}; they live in ../shared/traces")
    return path


def manifest_row(traces_dir: Path, month: str, vm_id: str) -> dict[str, str]:
    with open(traces_dir / "bitbrains-rnd" / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["month"] == month and row["vm_id"] == vm_id:
                return row
    raise AssertionError(f"{month}/{vm_id} not in the manifest")


def test_real_bitbrains_month_cleans_into_five_minute_fractions(traces_dir: Path) -> None:
    s = load_series(traces_dir, "bitbrains", "2013-8/1")
    meta = manifest_row(traces_dir, "2013-8", "1")
    span = float(meta["last_ts_s"]) - float(meta["first_ts_s"])
    assert s.step == 300.0
    assert len(s.cpu) == pytest.approx(span / 300.0, abs=2)
    assert s.mem is not None and len(s.mem) == len(s.cpu)
    assert all(0.0 <= v <= 2.0 for v in s.cpu) and all(0.0 <= v <= 1.0 for v in s.mem)
    mean_pct = 100 * sum(s.cpu) / len(s.cpu)
    assert mean_pct == pytest.approx(float(meta["cpu_usage_pct_mean"]), rel=0.05)


@pytest.mark.parametrize("name", ["2013-7/126", "2013-7/196", "2013-7/396"])
def test_real_bitbrains_files_with_duplicates_and_off_periods_still_give_a_month(
    traces_dir: Path, name: str
) -> None:
    # 126 and 196 repeat timestamps and sample faster than 5 min; 396 starts powered off
    s = load_series(traces_dir, "bitbrains", name)
    assert s.mem is not None
    assert len(s.cpu) > 4000
    assert all(0.0 <= v <= 2.0 for v in s.cpu) and all(0.0 <= v <= 1.0 for v in s.mem)


@pytest.mark.slow
def test_every_real_bitbrains_file_parses_into_valid_fractions(traces_dir: Path) -> None:
    files = sorted((traces_dir / "bitbrains-rnd").glob("*/*.csv.gz"))
    assert files
    for path in files:
        s = read_bitbrains(path)
        assert s.mem is not None and len(s.mem) == len(s.cpu) >= 100, path
        assert min(s.cpu) >= 0.0 and max(s.cpu) <= 2.0, path  # a VM flat out reads ~1.03
        assert min(s.mem) >= 0.0 and max(s.mem) <= 1.0, path


def test_real_planetlab_day_replays_and_loops_daily(traces_dir: Path) -> None:
    s = load_series(traces_dir, "planetlab", PLANET_SERIES)
    assert len(s.cpu) == 288 and s.mem is None
    assert s.cpu[:3] == pytest.approx((0.47, 0.04, 0.38))
    spec = trace_spec(series=PLANET_SERIES, mem=0.4)
    src = make_source(spec, seed=1, vmid=100, origin=ORIGIN, traces_dir=traces_dir)
    assert src.cpu(ORIGIN) == pytest.approx(0.47)
    assert src.cpu(ORIGIN + 86_400) == pytest.approx(0.47)
    assert src.cpu(ORIGIN + 150) == pytest.approx(0.255)
    assert 0.3 < src.mem(ORIGIN) < 0.5


def test_make_source_replays_a_real_bitbrains_trace_with_its_memory(traces_dir: Path) -> None:
    spec = trace_spec(dataset="bitbrains", series="2013-8/1", offset_hours=24.0)
    src = make_source(spec, seed=1, vmid=100, origin=ORIGIN, traces_dir=traces_dir)
    s = load_series(traces_dir, "bitbrains", "2013-8/1")
    assert s.mem is not None
    assert src.cpu(ORIGIN) == pytest.approx(s.cpu[288])
    assert src.mem(ORIGIN) == pytest.approx(s.mem[288])
    assert src.net_bytes(ORIGIN - 86_400, ORIGIN) > 86_400 * TRACE_NET_IDLE
