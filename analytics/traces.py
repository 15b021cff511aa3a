"""Polars loaders for the real VM traces: one long frame `series, ts, cpu, mem, disk, net` per
data set.

Both loaders return the same shape, sorted by `series, ts`:

* `series` (str): `'<month>/<id>'` for Bitbrains (`'2013-8/1'`), `'<day>/<vm-name>'` for
  PlanetLab (`'20110303/<vm-name>'`), the same names the simulator's reader uses;
* `ts` (Int64): epoch seconds on a 300 s grid (multiples of 300), one row per grid step, no gaps;
* `cpu` (Float64): busy fraction of the VM's own vCPUs, at least 0 and a little above 1 in
  bursts (the real range is 0 to about 1.06, with rare spikes to 1.5);
* `mem` (Float64): fraction of the VM's memory in use, in [0, 1]; null for PlanetLab;
* `disk`, `net` (Float64): bytes per second read plus written, and received plus transmitted;
  null for PlanetLab. The traces give KB/s; a KB is taken as 1,024 bytes, as for memory.

Cleaning rule (Bitbrains), applied in this order and nothing else. It is the rule of the
simulator's reader (`pvesim.traces.read_bitbrains`), re-implemented here vectorised so that
`analytics` does not depend on the simulator; `tests/analytics/test_traces.py` checks that both
give the same numbers:

1. Sort each file's rows by timestamp (epoch seconds, despite the `[ms]` header) and keep only
   the first row of each timestamp (first in file order).
2. A row whose CPU capacity or memory capacity is 0 is *missing*, not zero usage (the VM was off
   or not reporting): it is dropped, for both resources.
3. Per remaining row, cpu = `CPU usage [%]` / 100, floored at 0 but not capped: values a few
   per cent above 100 are real (about 2 % of rows, from VMs running flat out) and match PVE,
   whose guest `cpu` also exceeds 1.0 a little because it counts the emulator's own threads;
   capping them would erase how busy a saturated VM is. mem = usage KB / capacity KB, clamped to
   [0, 1]: a guest cannot use more memory than it was given, and the few dozen rows above
   capacity are accounting noise. disk and net are the sums of the two throughputs, floored
   at 0 (the simulator does not replay them; they are this loader's own).
4. Resample onto a 5-minute grid aligned to epoch multiples of 300 s, spanning the first to the
   last row of the file (zero-capacity rows included): a bucket is the mean of its rows; an
   empty bucket repeats the previous bucket (gaps carried forward), and buckets before the first
   usable row take that row's value. A file without any usable row yields no series.

PlanetLab files are 288 integer CPU percentages (5-minute steps, one day, no timestamps);
cpu = percent / 100 floored at 0, like Bitbrains. Each day gets a synthetic origin, midnight UTC
of the folder's date (`20110303` -> 2011-03-03 00:00 UTC), so row i is at origin + 300 i. The true
time zone and start time are unknown. Because the day is in the series name, the same VM on two
days is two series and days are never concatenated.

Only the development data is read: the months and days given (by default the ones in the shared
folder); the reserved evaluation data must never be put there.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

STEP = 300  # seconds; both data sets sample every 5 minutes
PLANETLAB_POINTS = 288  # one day of 5-minute samples

BITBRAINS_DIR = "bitbrains-rnd"
PLANETLAB_DIR = "planetlab"
BITBRAINS_MONTHS: tuple[str, ...] = ("2013-7", "2013-8")

_TIME = "Timestamp [ms]"  # the values are epoch seconds despite the header
_CPU_CAPACITY = "CPU capacity provisioned [MHZ]"
_CPU_PCT = "CPU usage [%]"
_MEM_CAPACITY = "Memory capacity provisioned [KB]"
_MEM_USAGE = "Memory usage [KB]"
_DISK = ("Disk read throughput [KB/s]", "Disk write throughput [KB/s]")
_NET = ("Network received throughput [KB/s]", "Network transmitted throughput [KB/s]")
_COLUMNS = (_TIME, _CPU_CAPACITY, _CPU_PCT, _MEM_CAPACITY, _MEM_USAGE, *_DISK, *_NET)
KIB = 1024.0  # bytes in the traces' KB

SCHEMA: dict[str, pl.DataType] = {
    "series": pl.String(),
    "ts": pl.Int64(),
    "cpu": pl.Float64(),
    "mem": pl.Float64(),
    "disk": pl.Float64(),
    "net": pl.Float64(),
}
_VALUES = ("cpu", "mem", "disk", "net")


def empty_frame() -> pl.DataFrame:
    """A frame with the loaders' columns and no rows."""
    return pl.DataFrame(schema=SCHEMA)


# --------------------------------------------------------------------------------------------
# Bitbrains
# --------------------------------------------------------------------------------------------


def _read_bitbrains_raw(path: Path, series: str) -> pl.DataFrame:
    """One gzipped `;\\t`-separated file as raw rows (file order kept in `row`)."""
    # polars wants a one-byte separator; dropping the tab after each ';' is one C-level pass
    data = gzip.decompress(path.read_bytes()).replace(b";\t", b";")
    try:
        raw = pl.read_csv(
            io.BytesIO(data),
            separator=";",
            columns=list(_COLUMNS),
            schema_overrides={c: pl.Float64 for c in _COLUMNS},
            infer_schema=False,
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable Bitbrains trace ({exc})") from None
    return raw.select(
        pl.lit(series).alias("series"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        pl.col(_TIME).alias("t"),
        pl.col(_CPU_CAPACITY).alias("cpu_cap"),
        pl.col(_CPU_PCT).alias("cpu_pct"),
        pl.col(_MEM_CAPACITY).alias("mem_cap"),
        pl.col(_MEM_USAGE).alias("mem_use"),
        (pl.col(_DISK[0]) + pl.col(_DISK[1])).alias("disk_kbs"),
        (pl.col(_NET[0]) + pl.col(_NET[1])).alias("net_kbs"),
    )


def clean_bitbrains(raw: pl.DataFrame) -> pl.DataFrame:
    """Apply the cleaning rule (module docstring) to raw rows of one or many files.

    `raw` has `series, row, t, cpu_cap, cpu_pct, mem_cap, mem_use, disk_kbs, net_kbs`, `row`
    being the position in the file; the result has the loaders' columns, sorted by `series, ts`.
    """
    step = pl.lit(STEP, dtype=pl.Int64)
    rows = (
        raw.sort("series", "t", "row")
        # 1. first row of each timestamp (in file order) wins, zero-capacity or not
        .unique(subset=["series", "t"], keep="first", maintain_order=True)
        .with_columns((pl.col("t") // STEP).cast(pl.Int64).mul(step).alias("ts"))
    )
    span = rows.group_by("series").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    buckets = (
        # 2. zero capacity is missing, not zero usage
        rows.filter((pl.col("cpu_cap") != 0.0) & (pl.col("mem_cap") != 0.0))
        # 3. fractions row by row (cpu floored at 0, mem clamped to [0, 1]), then 4. bucket means
        .with_columns(
            (pl.col("cpu_pct") / 100.0).clip(lower_bound=0.0).alias("cpu"),
            (pl.col("mem_use") / pl.col("mem_cap")).clip(0.0, 1.0).alias("mem"),
            (pl.col("disk_kbs") * KIB).clip(lower_bound=0.0).alias("disk"),
            (pl.col("net_kbs") * KIB).clip(lower_bound=0.0).alias("net"),
        )
        .group_by("series", "ts")
        .agg(pl.col(c).mean() for c in _VALUES)
    )
    # 4. the full grid per series, first to last row, then carry values forward (and back to
    # the buckets before the first usable row); series without any usable row are dropped
    grid = (
        span.join(buckets.select("series").unique(), on="series", how="semi")
        .select(
            "series",
            pl.int_ranges("first", pl.col("last") + step, step, dtype=pl.Int64).alias("ts"),
        )
        .explode("ts")
    )
    return (
        grid.join(buckets, on=["series", "ts"], how="left")
        .sort("series", "ts")
        .with_columns(pl.col(c).forward_fill().backward_fill().over("series") for c in _VALUES)
        .select(pl.col(name).cast(dtype) for name, dtype in SCHEMA.items())
    )


def bitbrains_files(
    traces_dir: Path | str,
    months: Sequence[str] = BITBRAINS_MONTHS,
    ids: Iterable[int] | None = None,
) -> list[tuple[str, Path]]:
    """`(series, path)` of the Bitbrains files to load, sorted by month then numeric id."""
    root = Path(traces_dir) / BITBRAINS_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"no Bitbrains traces at {root}")
    wanted = None if ids is None else {int(i) for i in ids}
    files: list[tuple[str, Path]] = []
    for month in months:
        folder = root / month
        if not folder.is_dir():
            raise FileNotFoundError(f"no Bitbrains month {month!r} at {folder}")
        found: list[tuple[int, Path]] = []
        for path in folder.glob("*.csv.gz"):
            stem = path.name.removesuffix(".csv.gz")
            if stem.isdigit() and (wanted is None or int(stem) in wanted):
                found.append((int(stem), path))
        files.extend((f"{month}/{vm}", path) for vm, path in sorted(found))
    return files


def load_bitbrains(
    traces_dir: Path | str,
    months: Sequence[str] = BITBRAINS_MONTHS,
    ids: Iterable[int] | None = None,
) -> pl.DataFrame:
    """The Bitbrains Rnd files of `months` (all ids, or only `ids`) as one clean long frame.

    `traces_dir` is the folder holding `bitbrains-rnd/`. Files are decompressed and parsed in a
    thread pool (gzip and polars release the GIL) and cleaned together in one vectorised pass.
    """
    files = bitbrains_files(traces_dir, months, ids)
    if not files:
        return empty_frame()
    with ThreadPoolExecutor() as pool:
        raws = list(pool.map(lambda f: _read_bitbrains_raw(f[1], f[0]), files))
    return clean_bitbrains(pl.concat(raws))


# --------------------------------------------------------------------------------------------
# PlanetLab
# --------------------------------------------------------------------------------------------


def planetlab_origin(day: str) -> int:
    """The synthetic origin of a PlanetLab day folder: midnight UTC of its date, epoch seconds."""
    try:
        date = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"PlanetLab day {day!r}: expected a YYYYMMDD folder name") from None
    return int(date.timestamp())


def planetlab_days(traces_dir: Path | str) -> list[str]:
    """The day folders (YYYYMMDD) present under `<traces_dir>/planetlab`, sorted."""
    root = Path(traces_dir) / PLANETLAB_DIR
    if not root.is_dir():
        raise FileNotFoundError(f"no PlanetLab traces at {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def load_planetlab(
    traces_dir: Path | str,
    days: Sequence[str] | None = None,
    limit: int | None = None,
) -> pl.DataFrame:
    """PlanetLab day files as one long frame (`mem`, `disk`, `net` null), one series per VM per
    day.

    `days` defaults to every day folder present; `limit` keeps at most that many VMs per day
    (the first in sorted name order), for quick runs. Each file must hold 288 integers.
    """
    root = Path(traces_dir) / PLANETLAB_DIR
    chosen = planetlab_days(traces_dir) if days is None else list(days)
    names: list[str] = []
    origins: list[int] = []
    chunks: list[bytes] = []
    for day in chosen:
        folder = root / day
        if not folder.is_dir():
            raise FileNotFoundError(f"no PlanetLab day {day!r} at {folder}")
        origin = planetlab_origin(day)
        paths = sorted(p for p in folder.iterdir() if p.is_file())
        for path in paths[:limit] if limit is not None else paths:
            values = path.read_bytes().split()
            if len(values) != PLANETLAB_POINTS:
                raise ValueError(
                    f"{path}: {len(values)} values, a PlanetLab day has {PLANETLAB_POINTS}"
                )
            names.append(f"{day}/{path.name}")
            origins.append(origin)
            chunks.append(b"\n".join(values))
    if not names:
        return empty_frame()
    try:
        pct = pl.read_csv(
            io.BytesIO(b"\n".join(chunks) + b"\n"),
            has_header=False,
            new_columns=["pct"],
            schema_overrides=[pl.Int64],
        )["pct"]
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise ValueError(f"PlanetLab files under {root}: expected integers ({exc})") from None
    index = (
        pl.DataFrame(
            {"series": names, "origin": origins},
            schema={"series": pl.String, "origin": pl.Int64},
        )
        .select(
            "series",
            pl.int_ranges(
                "origin", pl.col("origin") + PLANETLAB_POINTS * STEP, STEP, dtype=pl.Int64
            ).alias("ts"),
        )
        .explode("ts")
    )
    return (
        index.with_columns(
            (pct.cast(pl.Float64) / 100.0).clip(lower_bound=0.0).alias("cpu"),
            *(pl.lit(None, dtype=pl.Float64).alias(c) for c in ("mem", "disk", "net")),
        )
        .sort("series", "ts")
        .select(pl.col(name).cast(dtype) for name, dtype in SCHEMA.items())
    )
