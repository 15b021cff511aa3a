"""Scenario files: the nodes, guests, rules and load of a simulated cluster, as YAML.

A scenario is data, validated in one pass so that every mistake in a file is reported at once
with its location. Named scenarios ship inside the package (`pvesim/scenarios/*.yaml`);
`generate_large` builds big clusters for benchmarks without a file.
"""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from pvesim.units import GIB, parse_size

Size = Annotated[int, BeforeValidator(parse_size)]
PveVersion = Literal["9.1", "8.4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticLoad(_Strict):
    """Seeded load generator: cycles, trend, bursts and noise, all as fractions of capacity."""

    model: Literal["synthetic"] = "synthetic"
    cpu: float = Field(0.2, ge=0, le=4, description="mean CPU as a fraction of the guest's vCPUs")
    daily: float = Field(0.3, ge=0, le=1, description="daily swing, relative to the mean")
    weekly: float = Field(0.1, ge=0, le=1, description="weekend dip, relative to the mean")
    peak_hour: float = Field(14.0, ge=0, lt=24, description="hour of day (UTC) of the daily peak")
    trend: float = Field(0.0, ge=-1, le=1, description="relative CPU growth per day")
    bursts_per_day: float = Field(0.5, ge=0, le=200)
    burst_height: float = Field(1.0, ge=0, le=10, description="burst size, relative to the mean")
    burst_minutes: float = Field(20.0, gt=0, le=24 * 60)
    noise: float = Field(0.08, ge=0, le=2, description="noise sd, relative to the mean")
    mem: float = Field(0.5, ge=0, le=1, description="mean memory use as a fraction of maxmem")
    mem_trend: float = Field(0.0, ge=-1, le=1, description="memory fraction added per day")
    mem_noise: float = Field(0.02, ge=0, le=1)
    net_kbps: float = Field(200.0, ge=0, description="mean network traffic, KiB/s each way")
    disk_kbps: float = Field(100.0, ge=0, description="mean disk traffic, KiB/s each way")


class TraceLoad(_Strict):
    """Replay of a real utilisation trace (see pvesim.traces for the formats)."""

    model: Literal["trace"]
    dataset: Literal["bitbrains", "planetlab"]
    series: str = Field(description="bitbrains: '<month>/<id>'; planetlab: '<day>/<vm-name>'")
    offset_hours: float = Field(0.0, ge=0)
    mem: float = Field(0.5, ge=0, le=1, description="memory fraction when the trace has none")


def _load_kind(value: Any) -> str:
    model = value.get("model", "synthetic") if isinstance(value, dict) else value.model
    return str(model)


# `model` may be left out and then means synthetic
Load = Annotated[
    Annotated[SyntheticLoad, Tag("synthetic")] | Annotated[TraceLoad, Tag("trace")],
    Discriminator(_load_kind),
]


class StorageSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9\-_.]*[a-z0-9]$")
    type: Literal["rbd", "nfs", "cephfs", "lvmthin", "lvm", "zfspool", "dir", "btrfs"]
    shared: bool
    size: Size = Field(default=4 * 1024 * GIB)
    nodes: tuple[str, ...] | None = Field(None, description="nodes it exists on; all if unset")
    content: str = "images,rootdir"


class NodeSpec(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
    cores: int = Field(gt=0, le=1024, description="physical cores")
    threads: int | None = Field(None, gt=0, le=2048, description="logical CPUs; 2×cores if unset")
    memory: Size
    rootfs: Size = Field(default=100 * GIB)
    overhead_cpu: float = Field(0.3, ge=0, description="host CPUs busy with the host itself")
    overhead_mem: Size = Field(default=3 * GIB)
    cpu_model: str = "AMD EPYC 7302P 16-Core Processor"

    @property
    def maxcpu(self) -> int:
        return self.threads or 2 * self.cores


class DiskSpec(_Strict):
    drive: str = Field(pattern=r"^(scsi|virtio|sata|ide)\d+$|^rootfs$|^mp\d+$")
    storage: str
    size: Size


class GuestSpec(_Strict):
    vmid: int = Field(ge=100, le=999_999_999)
    name: str
    type: Literal["qemu", "lxc"] = "qemu"
    node: str
    status: Literal["running", "stopped"] = "running"
    cores: int = Field(1, gt=0, le=512)
    memory: Size = Field(default=2 * GIB)
    disks: tuple[DiskSpec, ...] = ()
    tags: tuple[str, ...] = ()
    pool: str | None = None
    template: bool = False
    lock: str | None = None
    hostpci: tuple[str, ...] = Field((), description="PCI passthrough devices (local resources)")
    usb: tuple[str, ...] = ()
    dirty_rate: float = Field(0.2, ge=0, le=3, description="RAM re-sent during live migration")
    load: Load = Field(default_factory=SyntheticLoad)


class HaResourceSpec(_Strict):
    sid: str = Field(pattern=r"^(vm|ct):\d+$")
    state: Literal["started", "stopped", "enabled", "disabled", "ignored"] = "started"
    group: str | None = None
    max_restart: int | None = None
    max_relocate: int | None = None
    failback: bool | None = None
    comment: str | None = None


class HaGroupSpec(_Strict):
    group: str
    nodes: tuple[str, ...] = Field(description="'node' or 'node:priority'")
    restricted: bool = False
    nofailback: bool = False
    comment: str | None = None


class HaRuleSpec(_Strict):
    rule: str
    type: Literal["node-affinity", "resource-affinity"]
    resources: tuple[str, ...]
    nodes: tuple[str, ...] = ()
    strict: bool = False
    affinity: Literal["positive", "negative"] | None = None
    disable: bool = False
    comment: str | None = None


class HaSpec(_Strict):
    resources: tuple[HaResourceSpec, ...] = ()
    groups: tuple[HaGroupSpec, ...] = ()
    rules: tuple[HaRuleSpec, ...] = ()
    maintenance: tuple[str, ...] = Field((), description="nodes in HA maintenance mode")


class PoolSpec(_Strict):
    poolid: str
    comment: str | None = None


class NetworkSpec(_Strict):
    migration_mbps: float = Field(10_000, gt=0, description="migration link bandwidth, Mbit/s")
    migration_type: Literal["secure", "insecure"] = "secure"


class ScenarioSpec(_Strict):
    name: str
    description: str = ""
    pve_version: PveVersion = "9.1"
    cluster_name: str = "lab"
    seed: int = 1
    start: float = Field(1_795_000_000.0, description="simulated epoch at start")
    network: NetworkSpec = NetworkSpec()
    storages: tuple[StorageSpec, ...] = ()
    nodes: tuple[NodeSpec, ...] = Field(min_length=1)
    guests: tuple[GuestSpec, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    ha: HaSpec = HaSpec()

    @model_validator(mode="after")
    def _references_resolve(self) -> ScenarioSpec:
        problems: list[str] = []
        node_names = [n.name for n in self.nodes]
        storages = {s.name: s for s in self.storages}
        pools = {p.poolid for p in self.pools}
        _duplicates("node name", node_names, problems)
        _duplicates("vmid", [g.vmid for g in self.guests], problems)
        _duplicates("storage", list(storages), problems)
        for g in self.guests:
            where = f"guests[vmid={g.vmid}]"
            if g.node not in node_names:
                problems.append(f"{where}.node: unknown node {g.node!r}; nodes are {node_names}")
            if g.pool is not None and g.pool not in pools:
                problems.append(f"{where}.pool: unknown pool {g.pool!r}; pools are {sorted(pools)}")
            for d in g.disks:
                if d.storage not in storages:
                    problems.append(f"{where}.disks.{d.drive}: unknown storage {d.storage!r}")
        for s in self.storages:
            for n in s.nodes or ():
                if n not in node_names:
                    problems.append(f"storages[{s.name}].nodes: unknown node {n!r}")
        vm_sids = {f"{'vm' if g.type == 'qemu' else 'ct'}:{g.vmid}" for g in self.guests}
        for r in self.ha.resources:
            if r.sid not in vm_sids:
                problems.append(f"ha.resources[{r.sid}]: no such guest")
        for rule in self.ha.rules:
            for sid in rule.resources:
                if sid not in vm_sids:
                    problems.append(f"ha.rules[{rule.rule}].resources: no such guest {sid!r}")
            for entry in rule.nodes:
                if entry.split(":")[0] not in node_names:
                    problems.append(f"ha.rules[{rule.rule}].nodes: unknown node {entry!r}")
        for node in self.ha.maintenance:
            if node not in node_names:
                problems.append(f"ha.maintenance: unknown node {node!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _duplicates(what: str, values: list[Any], problems: list[str]) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            problems.append(f"duplicate {what} {v!r}")
        seen.add(v)


class ScenarioError(ValueError):
    """A scenario file that cannot be used, with every problem it has."""


def builtin_names() -> list[str]:
    folder = resources.files("pvesim") / "scenarios"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str | Path) -> ScenarioSpec:
    """A built-in scenario by name (`demo`, `small`), `large:NODESxGUESTS`, or a YAML path."""
    text: str
    source = str(name_or_path)
    if source.startswith("large:"):
        return _parse_large(source)
    path = Path(source)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file {source} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("pvesim") / "scenarios" / f"{source}.yaml"
        if not resource.is_file():
            raise ScenarioError(
                f"unknown scenario {source!r}; built-in ones are {builtin_names()}, "
                "or give a path to a .yaml file or large:NODESxGUESTS"
            )
        text = resource.read_text(encoding="utf-8")
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<scenario>") -> ScenarioSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping of keys")
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            value = err.get("input")
            shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
            lines.append(f"  {loc}: {err['msg']}{shown}")
        raise ScenarioError(f"{source}: {len(lines)} problem(s):\n" + "\n".join(lines)) from None


def _parse_large(source: str) -> ScenarioSpec:
    try:
        nodes_s, guests_s = source.removeprefix("large:").lower().split("x")
        return generate_large(int(nodes_s), int(guests_s))
    except ValueError:
        raise ScenarioError(f"{source!r}: write large:NODESxGUESTS, e.g. large:40x5000") from None


def generate_large(
    nodes: int, guests: int, seed: int = 7, pve_version: PveVersion = "9.1"
) -> ScenarioSpec:
    """A big, plausible cluster: shared Ceph storage, mixed sizes, a few rule tags."""
    if nodes < 1 or guests < 0:
        raise ScenarioError("a large scenario needs at least one node and zero or more guests")
    rng = random.Random(seed)
    node_specs = [
        NodeSpec(name=f"pve{i + 1}", cores=32, threads=64, memory=512 * GIB) for i in range(nodes)
    ]
    storages = (StorageSpec(name="ceph-vm", type="rbd", shared=True, size=200 * 1024 * GIB),)
    guest_specs = []
    for i in range(guests):
        vmid = 1000 + i
        cores = rng.choice((1, 2, 2, 4, 4, 8))
        mem_gib = rng.choice((1, 2, 4, 4, 8, 16))
        tags: tuple[str, ...] = ()
        roll = rng.random()
        if roll < 0.05:
            tags = (f"plb_anti_affinity_grp{i % 50}",)
        elif roll < 0.08:
            tags = (f"plb_affinity_grp{i % 30}",)
        elif roll < 0.09:
            tags = ("plb_ignore",)
        guest_specs.append(
            GuestSpec(
                vmid=vmid,
                name=f"vm{vmid}",
                type="lxc" if rng.random() < 0.15 else "qemu",
                node=node_specs[i % nodes].name,
                cores=cores,
                memory=mem_gib * GIB,
                disks=(DiskSpec(drive="scsi0", storage="ceph-vm", size=32 * GIB),),
                tags=tags,
                load=SyntheticLoad(
                    cpu=round(rng.uniform(0.02, 0.6), 3),
                    peak_hour=rng.uniform(8, 20),
                    mem=round(rng.uniform(0.2, 0.85), 3),
                ),
            )
        )
    return ScenarioSpec(
        name=f"large-{nodes}x{guests}",
        description="generated cluster for benchmarks",
        pve_version=pve_version,
        seed=seed,
        nodes=tuple(node_specs),
        storages=storages,
        guests=tuple(guest_specs),
    )
