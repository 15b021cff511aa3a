"""Routes: path templates, their parameters, required privilege and handler.

Each endpoint module registers its routes on a shared `Router`; the server only matches,
checks and calls. A path that matches no route answers 501 as PVE does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pvesim.api.params import ApiError, Param, validate
from pvesim.cluster import Cluster


@dataclass(frozen=True)
class Identity:
    """Who is calling: `user` is the full id (`root@pam!lb` for tokens)."""

    user: str
    privileges: frozenset[str]
    ticket_auth: bool

    @property
    def userid(self) -> str:
        return self.user.partition("!")[0]


@dataclass
class Request:
    cluster: Cluster
    identity: Identity
    params: dict[str, Any]
    now: float
    method: str
    path: str
    login: Callable[[str, str, str | None], dict[str, Any]] | None = None

    def require(self, privilege: str, acl_path: str) -> None:
        if privilege not in self.identity.privileges:
            raise ApiError(403, f"Permission check failed ({acl_path}, {privilege})")


@dataclass(frozen=True)
class Reply:
    """A payload plus PVE's optional `total` next to `data`."""

    data: Any
    total: int | None = None


Handler = Callable[[Request], Any]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    params: dict[str, Param]
    privilege: tuple[str, str] | None = None  # (privilege, acl path template)
    proxied: bool = False  # `proxyto node` in PVE: runs on that node, 595 when it is down
    versions: frozenset[str] = frozenset({"9.1", "8.4"})
    params_by_version: dict[str, dict[str, Param]] = field(default_factory=dict)
    public: bool = False  # answered without authentication (login)

    @property
    def segments(self) -> list[str]:
        return self.template.strip("/").split("/") if self.template != "/" else []

    def params_for(self, version: str) -> dict[str, Param]:
        return self.params_by_version.get(version, self.params)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self,
        method: str,
        template: str,
        params: dict[str, Param] | None = None,
        privilege: tuple[str, str] | None = None,
        proxied: bool = False,
        versions: tuple[str, ...] = ("9.1", "8.4"),
        params_by_version: dict[str, dict[str, Param]] | None = None,
        public: bool = False,
    ) -> Callable[[H], H]:
        def register(fn: H) -> H:
            self.routes.append(
                Route(
                    method,
                    template,
                    fn,
                    params or {},
                    privilege,
                    proxied,
                    frozenset(versions),
                    params_by_version or {},
                    public,
                )
            )
            return fn

        return register

    def match(self, method: str, path: str, version: str) -> tuple[Route, dict[str, str]]:
        parts = [p for p in path.strip("/").split("/") if p]
        for route in self.routes:
            if route.method != method or version not in route.versions:
                continue
            segs = route.segments
            if len(segs) != len(parts):
                continue
            bound: dict[str, str] = {}
            for seg, part in zip(segs, parts, strict=True):
                if seg.startswith("{") and seg.endswith("}"):
                    bound[seg[1:-1]] = part
                elif seg != part:
                    break
            else:
                return route, bound
        raise ApiError(501, f"Method '{method} /{'/'.join(parts)}' not implemented")


def bind_params(
    route: Route, version: str, path_params: dict[str, str], given: dict[str, Any], json_body: bool
) -> dict[str, Any]:
    merged = dict(given)
    for key, value in path_params.items():
        if key in merged and str(merged[key]) != value:
            raise ApiError(
                400,
                "Parameter verification failed.",
                {key: "duplicate parameter (already defined in URI) with conflicting values!"},
            )
        merged[key] = value
    return validate(route.params_for(version), merged, json_body)
