"""The simulator's PVE surface against the official API schema, route by route, per version.

Every route in `pvesim.api.router` is checked once for PVE 9.1 and once for PVE 8.4 against
the schema that pve-docs ships for that release (`../shared/pve-api/pve-<v>-apidata.json`,
read at run time, never copied here):

1. the path and method exist in that version's schema exactly when the simulator serves them
   in that version (a 9.1-only path must answer 501 in 8.4 mode);
2. each parameter the simulator accepts is declared with the same type, optional/required
   status and enum (and the same minimum, maximum, default and format where the simulator
   sets them); each declared parameter the simulator does not accept is in
   PARAMS_NOT_ACCEPTED;
3. what the endpoint returns when called through proxmoxer (after a few migrations, so tasks
   exist) has the declared JSON type; where the schema declares properties, every returned
   field is declared with a compatible type and enum value, nested objects and arrays
   included, and every required one is present. Fields real PVE returns beyond its own
   schema are in EXTRA_FIELDS, citing the facts file (shared/docs/pve-api-facts.md).

Both allow-lists must stay honest: an entry that is no longer needed fails its case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from pvesim import SimConfig, Simulator
from pvesim.api import router
from pvesim.api.routing import Route
from tests.conftest import Control, shared_dir, token_client

VERSIONS = ("9.1", "8.4")
BOTH = frozenset(VERSIONS)


# -- allow-lists ----------------------------------------------------------------------------

# Declared parameters the simulator deliberately does not accept, as {(route, param): why}.
# None today: every parameter of every served endpoint is in pvesim's Param tables. Add a
# simple parameter to those tables rather than here; list only ones that would need real
# behaviour the load balancer never uses.
PARAMS_NOT_ACCEPTED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Extra:
    """Fields real PVE returns in `where` that the schema leaves undeclared."""

    route: str
    where: str  # "data" is the payload, "data[]" its items, "data.x" a nested object
    fields: tuple[str, ...]
    why: str
    versions: frozenset[str] = BOTH


EXTRA_FIELDS = (
    Extra(
        "POST /access/ticket",
        "data",
        ("cap",),
        "§2.1: the ticket answer carries the capability map the GUI uses",
    ),
    Extra(
        "GET /cluster/resources",
        "data[]",
        ("host-arch",),
        "§4.3: node entries carry host-arch next to cgroup-mode",
    ),
    Extra(
        "GET /cluster/resources",
        "data[]",
        ("sdn",),
        "§4.3/§9: sdn entries name their zone; the 8.4 schema lists type 'sdn' but not the field",
        frozenset({"8.4"}),
    ),
    Extra(
        "GET /cluster/resources",
        "data[]",
        ("shared",),
        "§4.3: storage entries carry shared (0/1); the 8.4 schema does not declare it yet",
        frozenset({"8.4"}),
    ),
    Extra(
        "GET /nodes",
        "data[]",
        ("id", "type", "disk", "maxdisk"),
        "§4.4: /nodes entries are resource entries (id, type, root fs disk/maxdisk)",
    ),
    Extra(
        "GET /nodes/{node}/status",
        "data.cpuinfo",
        ("mhz", "hvm", "flags", "user_hz"),
        "§4.5: cpuinfo has more keys than cores/cpus/model/sockets",
    ),
    Extra(
        "GET /nodes/{node}/tasks",
        "data[]",
        ("tokenid",),
        "§3.2: tasks started by an API token carry tokenid next to the bare user",
    ),
    Extra(
        "GET /cluster/tasks",
        "data[]",
        ("tokenid",),
        "§3.2: tasks started by an API token carry tokenid next to the bare user",
    ),
    Extra(
        "GET /nodes/{node}/tasks/{upid}/status",
        "data",
        ("tokenid",),
        "§3.2: tasks started by an API token carry tokenid next to the bare user",
    ),
    Extra(
        "GET /nodes/{node}/qemu",
        "data[]",
        ("disk",),
        "§4.8: vmstatus always sets disk (0: no in-guest usage for VMs)",
    ),
    Extra(
        "GET /nodes/{node}/qemu/{vmid}/status/current",
        "data",
        ("disk",),
        "§4.8/§4.9: status/current has the vmstatus fields, disk included",
    ),
    Extra(
        "GET /nodes/{node}/qemu/{vmid}/config",
        "data",
        ("meta",),
        "§4.10: configs carry meta (creation-qemu, ctime); the 8.4 schema does not declare it",
        frozenset({"8.4"}),
    ),
    Extra(
        "GET /nodes/{node}/lxc",
        "data[]",
        ("memhost", "pressurecpufull"),
        "§4.11/§9: CT lists have the VM list's shape, PVE 9 memhost and pressure* included",
        frozenset({"9.1"}),
    ),
    Extra(
        "GET /nodes/{node}/lxc/{vmid}/status/current",
        "data",
        ("memhost", "pressurecpufull"),
        "§4.11/§9: CT status has the VM status' shape, PVE 9 memhost and pressure* included",
        frozenset({"9.1"}),
    ),
    Extra(
        "GET /nodes/{node}/lxc",
        "data[]",
        ("type", "swap"),
        "§4.11: VM list shape plus container keys (pve-container vmstatus sets type, swap)",
    ),
    Extra(
        "GET /nodes/{node}/lxc/{vmid}/status/current",
        "data",
        ("type", "swap"),
        "§4.11: VM status shape plus container keys (pve-container vmstatus sets type, swap)",
    ),
    Extra(
        "GET /nodes/{node}/qemu/{vmid}/migrate",
        "data.local_disks[]",
        (
            "is_attached",
            "drivename",
            "referenced_in_config",
            "replicate",
            "is_vmstate",
            "is_tpmstate",
        ),
        "§6.1: local_disks entries carry the foreach_volid attributes",
    ),
    Extra(
        "GET /nodes/{node}/qemu/{vmid}/migrate",
        "data.not_allowed_nodes.*",
        ("unavailable-resources",),
        "§6.1: nodes lacking a guest's devices are refused with unavailable-resources",
    ),
)

# Payload JSON types real PVE sends although the schema says otherwise, as
# {(route, where): (json type sent, why)}.
TYPE_QUIRKS: dict[tuple[str, str], tuple[str, str]] = {
    # Not in the facts file: PVE answers `{"data":"100"}`; clients parse nextid as a string
    # or as string-or-integer (e.g. bpg/terraform-provider-proxmox types.CustomInt).
    ("GET /cluster/nextid", "data"): ("string", "nextid comes back as a decimal string"),
}

# Where the schema's properties describe each value of a map keyed by node name, not the
# map itself (§6.1 for QEMU, §4.11 for LXC: `{"pve3": {"unavailable_storages": [...]}}`).
MAP_VALUED = {
    ("GET /nodes/{node}/qemu/{vmid}/migrate", "data.not_allowed_nodes"),
    ("GET /nodes/{node}/lxc/{vmid}/migrate", "data.not-allowed-nodes"),
}

# Index endpoints declare only their link key; their entries are the element objects, so
# their fields are checked against the element endpoint's schema (§4.13: /cluster/ha/resources
# lists what /cluster/ha/resources/{sid} returns; §3.4: /cluster/tasks lists task entries).
SHAPE_FROM = {
    "GET /cluster/ha/resources": "GET /cluster/ha/resources/{sid}",
    "GET /cluster/tasks": "GET /nodes/{node}/tasks",
}

# Calls that fail on purpose in one version, so only the error is checked there.
EXPECTED_ERRORS = {
    # §4.13: after the 9.x groups-to-rules migration listing groups is a 500
    ("GET /cluster/ha/groups", "9.1"): (500, "ha groups have been migrated to rules"),
}


# -- how to call each route -----------------------------------------------------------------

DONE_TASK = "<a finished migration task>"
RUNNING_TASK = "<a running migration task>"
USERNAME = "<the simulator's user>"
PASSWORD = "<the simulator's password>"
NODES = ("pve1", "pve2", "pve3")
QEMU = (100, 101, 102, 103, 104, 105, 106)
LXC = (200, 201)

# Keys named like a path placeholder fill it; `vmid` also fills {node} with the guest's node,
# a task reference fills {upid} and {node}. Everything else is a query or form parameter.
CALLS: dict[str, list[dict[str, Any]]] = {
    "GET /version": [{}],
    "GET /access/ticket": [{}],
    "POST /access/ticket": [{"username": USERNAME, "password": PASSWORD}],
    "GET /access/permissions": [{}, {"path": "/vms"}],
    "GET /cluster/status": [{}],
    "GET /cluster/resources": [{}, *({"type": t} for t in ("vm", "node", "storage", "sdn"))],
    "GET /cluster/options": [{}],
    "GET /cluster/tasks": [{}],
    "GET /cluster/nextid": [{}, {"vmid": 150}],
    "GET /nodes": [{}],
    "GET /nodes/{node}": [{"node": "pve1"}],
    "GET /nodes/{node}/status": [{"node": n} for n in NODES],
    "GET /nodes/{node}/version": [{"node": "pve2"}],
    "GET /nodes/{node}/time": [{"node": n} for n in NODES],
    "GET /nodes/{node}/rrddata": [
        {"node": "pve1", "timeframe": "hour"},
        {"node": "pve2", "timeframe": "day", "cf": "MAX"},
    ],
    "GET /nodes/{node}/storage": [{"node": n} for n in NODES],
    "GET /nodes/{node}/tasks": [
        {"node": "pve1"},
        {"node": "pve2", "source": "all"},
        {"node": "pve2", "source": "active"},
    ],
    "GET /nodes/{node}/tasks/{upid}": [{"upid": DONE_TASK}],
    "GET /nodes/{node}/tasks/{upid}/status": [{"upid": DONE_TASK}, {"upid": RUNNING_TASK}],
    "GET /nodes/{node}/tasks/{upid}/log": [{"upid": DONE_TASK}, {"upid": RUNNING_TASK}],
    "GET /nodes/{node}/qemu": [*({"node": n} for n in NODES), {"node": "pve1", "full": 1}],
    "GET /nodes/{node}/lxc": [{"node": n} for n in NODES],
    "GET /nodes/{node}/qemu/{vmid}/status/current": [{"vmid": v} for v in QEMU],
    "GET /nodes/{node}/qemu/{vmid}/config": [
        *({"vmid": v} for v in QEMU),
        {"vmid": 100, "current": 1},
    ],
    "GET /nodes/{node}/qemu/{vmid}/rrddata": [
        {"vmid": 100, "timeframe": "hour"},
        {"vmid": 106, "timeframe": "day", "cf": "MAX"},
    ],
    "POST /nodes/{node}/qemu/{vmid}/migrate": [{"vmid": 100, "target": "pve3", "online": 1}],
    # 102 is locked by its running migration, which GET migrate refuses
    "GET /nodes/{node}/qemu/{vmid}/migrate": [{"vmid": v} for v in (100, 103, 104, 105, 106)],
    "GET /nodes/{node}/lxc/{vmid}/status/current": [{"vmid": v} for v in LXC],
    "GET /nodes/{node}/lxc/{vmid}/config": [{"vmid": v} for v in LXC],
    "GET /nodes/{node}/lxc/{vmid}/rrddata": [{"vmid": 200, "timeframe": "hour"}],
    "POST /nodes/{node}/lxc/{vmid}/migrate": [{"vmid": 200, "target": "pve1", "restart": 1}],
    "GET /nodes/{node}/lxc/{vmid}/migrate": [{"vmid": v} for v in LXC],
    "GET /cluster/ha/resources": [{}, {"type": "ct"}],
    "GET /cluster/ha/resources/{sid}": [{"sid": "vm:103"}, {"sid": "ct:201"}],
    "GET /cluster/ha/groups": [{}],
    "GET /cluster/ha/rules": [{}, {"type": "node-affinity"}, {"resource": "vm:103"}],
    "GET /cluster/ha/status/current": [{}],
    "GET /cluster/ha/status/manager_status": [{}],
    "GET /pools": [{}, {"poolid": "prod"}],
    "GET /pools/{poolid}": [{"poolid": "prod"}],
}


# -- the schema -----------------------------------------------------------------------------


@cache
def schema(version: str) -> dict[str, dict[str, Any]]:
    """{path: {METHOD: info}} of one PVE release."""
    tree = json.loads((shared_dir("pve-api") / f"pve-{version}-apidata.json").read_text())
    index: dict[str, dict[str, Any]] = {}

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            index[node["path"]] = node.get("info", {})
            walk(node.get("children", []))

    walk(tree)
    return index


def method_info(version: str, key: str) -> dict[str, Any] | None:
    method, path = key.split(" ", 1)
    info: dict[str, Any] | None = schema(version).get(path, {}).get(method)
    return info


def key_of(route: Route) -> str:
    return f"{route.method} {route.template}"


# -- the live simulators --------------------------------------------------------------------


@dataclass
class Live:
    sim: Simulator
    pve: ProxmoxAPI
    tasks: dict[str, str] = field(default_factory=dict)  # DONE_TASK/RUNNING_TASK -> UPID


def _start(version: str) -> Live:
    # conftest's make_sim settings (paused clock, no 401 delay), but shared by the module
    sim = Simulator(
        SimConfig(scenario="small", pve_version=version, speed=0.0, auth_failure_delay=0.0)
    ).start()
    live = Live(sim, token_client(sim))
    pve, control = live.pve, Control(sim)
    live.tasks[DONE_TASK] = pve.nodes("pve1").qemu(101).migrate.post(target="pve2", online=1)
    pve.nodes("pve3").lxc(200).migrate.post(target="pve1", restart=1)
    control.advance(600)
    pve.nodes("pve2").qemu(103).migrate.post(target="pve3", online=1)  # HA: a hamigrate task
    live.tasks[RUNNING_TASK] = pve.nodes("pve2").qemu(102).migrate.post(target="pve3", online=1)
    control.advance(5)
    return live


@pytest.fixture(scope="module")
def live() -> Iterator[dict[str, Live]]:
    """One simulator per PVE version, started on first use, with migrations done."""

    class Lazy(dict[str, Live]):
        def __missing__(self, version: str) -> Live:
            self[version] = _start(version)
            return self[version]

    sims = Lazy()
    yield sims
    for one in sims.values():
        one.sim.stop()


def call(live: Live, route: Route, spec: dict[str, Any]) -> tuple[str, Any]:
    """Call `route` as `spec` says; returns (what was called, the payload)."""
    params = dict(spec)
    bound: dict[str, str] = {}
    if "{vmid}" in route.template:
        bound["vmid"] = str(params.pop("vmid"))
        guest = live.sim.cluster.guest(int(bound["vmid"]))
        assert guest is not None
        bound["node"] = guest.node
    if "{upid}" in route.template:
        bound["upid"] = live.tasks[params.pop("upid")]
        bound["node"] = bound["upid"].split(":")[1]
    for name in re.findall(r"{(\w+)}", route.template):
        if name in params:
            bound[name] = str(params.pop(name))
    fill = {USERNAME: live.sim.config.username, PASSWORD: live.sim.password}
    params = {k: fill.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    path = route.template.format(**bound).lstrip("/")
    label = f"{route.method} /{path}" + (f" {params}" if params else "")
    resource = live.pve(path)
    payload = resource.post(**params) if route.method == "POST" else resource.get(**params)
    return label, payload


# -- checking a payload against `returns` ---------------------------------------------------

JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    # Perl emits booleans as 0/1 numbers (§0.2, §4); JSON true/false would be a change
    "boolean": lambda v: type(v) is int and v in (0, 1),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def json_type(value: Any) -> str:
    for name in ("integer", "number", "string", "array", "object", "null"):
        if JSON_TYPES[name](value):
            return name
    return type(value).__name__


def declared(props: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The property schema for `name`, honouring indexed keys such as `net[n]`."""
    if name in props:
        spec: dict[str, Any] = props[name]
        return spec
    m = re.fullmatch(r"(.+?)(\d+)", name)
    if m and f"{m.group(1)}[n]" in props:
        spec = props[f"{m.group(1)}[n]"]
        return spec
    return None


@dataclass
class FieldCheck:
    route: str
    version: str
    allowed: set[tuple[str, str]]
    problems: set[str] = field(default_factory=set)
    seen_extras: set[tuple[str, str]] = field(default_factory=set)

    def value(self, value: Any, spec: dict[str, Any], where: str) -> None:
        kind = spec.get("type")
        quirk = TYPE_QUIRKS.get((self.route, where))
        if quirk and JSON_TYPES[quirk[0]](value):
            self.seen_extras.add((where, "<type>"))
            return
        kinds = kind if isinstance(kind, list) else [kind] if kind else []
        if kinds and not any(JSON_TYPES[k](value) for k in kinds if k in JSON_TYPES):
            self.problems.add(f"{where}: declared {kind}, got {json_type(value)} {value!r:.40}")
            return
        enum = spec.get("enum")
        if enum is not None and not isinstance(value, list | dict) and str(value) not in enum:
            self.problems.add(f"{where}: {value!r} is not in the declared enum {enum}")
        if isinstance(value, list) and isinstance(spec.get("items"), dict):
            for item in value:
                self.value(item, spec["items"], f"{where}[]")
        if isinstance(value, dict) and spec.get("properties"):
            if (self.route, where) in MAP_VALUED:
                for entry in value.values():
                    self.value(entry, {**spec, "type": "object"}, f"{where}.*")
                return
            self.object(value, spec, where)

    def object(self, value: dict[str, Any], spec: dict[str, Any], where: str) -> None:
        props: dict[str, Any] = spec["properties"]
        for name, item in value.items():
            prop = declared(props, name)
            if prop is not None:
                self.value(item, prop, f"{where}.{name}")
            elif (where, name) in self.allowed:
                self.seen_extras.add((where, name))
            elif not spec.get("additionalProperties"):
                self.problems.add(f"{where}.{name}: not declared in the schema")
        for name, prop in props.items():
            if not prop.get("optional") and "[n]" not in name and name not in value:
                self.problems.add(f"{where}.{name}: required by the schema but missing")


def returns_of(version: str, key: str) -> dict[str, Any]:
    """The `returns` schema to check `key` against (see SHAPE_FROM and index_keys)."""
    info = method_info(version, key)
    assert info is not None
    returns: dict[str, Any] = info.get("returns") or {}
    source = SHAPE_FROM.get(key)
    if source is not None:
        element = (method_info(version, source) or {}).get("returns") or {}
        if element.get("type") == "array":
            element = element["items"]
        return {**returns, "items": element}
    items = returns.get("items") or {}
    props = items.get("properties")
    if props and set(props) <= index_keys(version, key, returns):
        # an index that declares only the key of its elements: the rest is undeclared by
        # design, so that key is all there is to check
        return {**returns, "items": {**items, "additionalProperties": 1}}
    return returns


def index_keys(version: str, key: str, returns: dict[str, Any]) -> set[str]:
    """The keys naming an index's elements: its `links`, or the {x} of a `path/{x}` child."""
    keys = {link["href"].strip("{}") for link in returns.get("links") or ()}
    path = key.split(" ", 1)[1]
    for child in schema(version):
        m = re.fullmatch(re.escape(path) + r"/\{([^/}]+)\}", child)
        if m:
            keys.add(m.group(1))
    return keys


# -- the cases ------------------------------------------------------------------------------


def case_id(route: Route, version: str) -> str:
    if version in route.versions:
        return f"{key_of(route)} conforms to the PVE {version} schema"
    return f"{key_of(route)} is neither in the PVE {version} schema nor served in {version} mode"


CASES = [(route, version) for route in router.routes for version in VERSIONS]


@pytest.mark.parametrize(("route", "version"), CASES, ids=[case_id(r, v) for r, v in CASES])
def test_route(
    route: Route, version: str, live: dict[str, Live], request: pytest.FixtureRequest
) -> None:
    key = key_of(route)
    info = method_info(version, key)
    calls = CALLS.get(key)
    assert calls, f"{key}: add how to call it to CALLS so its answers are checked"
    if version not in route.versions:
        assert info is None, f"{key} exists in PVE {version} but the simulator does not serve it"
        with pytest.raises(ResourceException) as refused:
            call(live[version], route, calls[0])
        assert refused.value.status_code == 501
        return
    assert info is not None, f"{key} does not exist in PVE {version}"
    check_params(route, version, key, info)
    if route.method != "GET" and not route.public:
        # it changes the cluster: give it a simulator of its own, the others keep their state
        sim = request.getfixturevalue("make_sim")("small", pve_version=version)
        check_returns(route, version, key, Live(sim, token_client(sim)), calls)
    else:
        check_returns(route, version, key, live[version], calls)


def check_params(route: Route, version: str, key: str, info: dict[str, Any]) -> None:
    props: dict[str, Any] = (info.get("parameters") or {}).get("properties") or {}
    mine = route.params_for(version)
    problems: list[str] = []
    for name, p in mine.items():
        spec = props.get(name)
        if spec is None:
            problems.append(f"{name}: accepted but not declared")
            continue
        if p.type != spec.get("type"):
            problems.append(f"{name}: type {p.type}, schema {spec.get('type')}")
        if p.optional != bool(spec.get("optional")):
            problems.append(
                f"{name}: optional={p.optional}, schema optional={spec.get('optional')}"
            )
        if tuple(spec.get("enum") or ()) != (p.enum or ()):
            problems.append(f"{name}: enum {p.enum}, schema {spec.get('enum')}")
        for bound in ("minimum", "maximum"):
            ours, theirs = getattr(p, bound), spec.get(bound)
            if (ours is None) != (theirs is None) or (
                ours is not None and float(ours) != float(theirs)
            ):
                problems.append(f"{name}: {bound} {ours}, schema {theirs}")
        if p.default is not None and p.default != spec.get("default"):
            problems.append(f"{name}: default {p.default!r}, schema {spec.get('default')!r}")
        if p.format is not None and p.format != spec.get("format"):
            problems.append(f"{name}: format {p.format}, schema {spec.get('format')}")
    for name in props:
        if name not in mine and (key, name) not in PARAMS_NOT_ACCEPTED:
            problems.append(f"{name}: declared but not accepted (add it or allow-list it)")
    for (route_key, name), _why in PARAMS_NOT_ACCEPTED.items():
        if route_key == key and (name in mine or name not in props):
            problems.append(f"{name}: stale PARAMS_NOT_ACCEPTED entry")
    assert not problems, f"{key} parameters differ from PVE {version}:\n" + "\n".join(problems)


def check_returns(
    route: Route, version: str, key: str, live: Live, calls: list[dict[str, Any]]
) -> None:
    expected_error = EXPECTED_ERRORS.get((key, version))
    if expected_error is not None:
        status, text = expected_error
        with pytest.raises(ResourceException) as failed:
            call(live, route, calls[0])
        assert failed.value.status_code == status
        assert text in str(failed.value.content)
        return
    allowed = {
        (e.where, name)
        for e in EXTRA_FIELDS
        if e.route == key and version in e.versions
        for name in e.fields
    }
    quirks = {(where, "<type>") for (r, where) in TYPE_QUIRKS if r == key}
    check = FieldCheck(key, version, allowed)
    returns = returns_of(version, key)
    for spec in calls:
        label, payload = call(live, route, spec)
        before = set(check.problems)
        check.value(payload, returns, "data")
        check.problems = before | {f"{p}  [{label}]" for p in check.problems - before}
    stale = sorted((allowed | quirks) - check.seen_extras)
    assert not stale, f"{key} in PVE {version}: allow-list entries not needed any more: {stale}"
    assert not check.problems, f"{key} answers differ from PVE {version}:\n" + "\n".join(
        sorted(check.problems)
    )
