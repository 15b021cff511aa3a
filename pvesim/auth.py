"""Authentication as pveproxy does it: API token header, or ticket cookie + CSRF header.

Tickets are `PVE:<user>:<HEXTIME>::<signature>` and live two hours of *real* time (clients
renew them on the real clock, whatever speed the simulated clock runs at).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass, field

from pvesim.api.params import ApiError
from pvesim.api.routing import Identity

TICKET_LIFETIME = 7200

ALL_PRIVILEGES = frozenset(
    {
        "Sys.Audit",
        "Sys.Console",
        "Sys.Modify",
        "VM.Audit",
        "VM.Migrate",
        "VM.PowerMgmt",
        "VM.Config.Disk",
        "Datastore.Audit",
        "Datastore.AllocateSpace",
        "Pool.Audit",
    }
)


@dataclass(frozen=True)
class TokenCredential:
    user: str  # e.g. root@pam
    tokenid: str  # e.g. proxflow
    secret: str
    privileges: frozenset[str] = ALL_PRIVILEGES

    @property
    def full_id(self) -> str:
        return f"{self.user}!{self.tokenid}"


@dataclass(frozen=True)
class UserCredential:
    user: str
    password: str
    privileges: frozenset[str] = ALL_PRIVILEGES


@dataclass
class Authenticator:
    secret: bytes
    version: str
    tokens: list[TokenCredential] = field(default_factory=list)
    users: list[UserCredential] = field(default_factory=list)
    failure_delay: float = 3.0

    # -- tickets -----------------------------------------------------------------------------
    def _sign(self, payload: str) -> str:
        mac = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.b64encode(mac).decode()

    def issue_ticket(self, user: str) -> tuple[str, str]:
        stamp = f"{int(time.time()):08X}"
        plain = f"PVE:{urllib.parse.quote(user, safe='@!')}:{stamp}"
        ticket = f"{plain}::{self._sign(plain)}"
        csrf = f"{stamp}:{self._sign('csrf:' + stamp + ':' + user)}"
        return ticket, csrf

    def _ticket_user(self, ticket: str) -> str | None:
        plain, sep, sig = ticket.rpartition("::")
        if not sep or not hmac.compare_digest(self._sign(plain), sig):
            return None
        parts = plain.split(":")
        if len(parts) != 3 or parts[0] != "PVE":
            return None
        try:
            age = time.time() - int(parts[2], 16)
        except ValueError:
            return None
        if age > TICKET_LIFETIME or age < -300:
            return None
        return urllib.parse.unquote(parts[1])

    def _csrf_ok(self, token: str | None, user: str) -> bool:
        if not token or ":" not in token:
            return False
        stamp, _, sig = token.partition(":")
        return hmac.compare_digest(self._sign("csrf:" + stamp + ":" + user), sig)

    # -- request authentication -------------------------------------------------------------
    def _privileges_of(self, user: str) -> frozenset[str]:
        for u in self.users:
            if u.user == user:
                return u.privileges
        return frozenset()

    def login(self, username: str, password: str, realm: str | None) -> dict[str, object]:
        user = username if "@" in username or not realm else f"{username}@{realm}"
        for cred in self.users:
            if cred.user == user and hmac.compare_digest(cred.password, password):
                ticket, csrf = self.issue_ticket(user)
                return {"username": user, "ticket": ticket, "CSRFPreventionToken": csrf}
        # renewal: the current ticket is accepted as the password
        if password.startswith("PVE:") and self._ticket_user(password) == user:
            ticket, csrf = self.issue_ticket(user)
            return {"username": user, "ticket": ticket, "CSRFPreventionToken": csrf}
        raise ApiError(401, "authentication failure")

    def _bad_credentials(self, kind: str) -> ApiError:
        if self.version == "9.1":
            return ApiError(401, "Authentication failed!")
        return ApiError(
            401,
            "invalid token value!" if kind == "token" else "permission denied - invalid PVE ticket",
        )

    def identify(
        self, method: str, authorization: str | None, cookie: str | None, csrf: str | None
    ) -> Identity:
        if authorization and authorization.startswith("PVEAPIToken"):
            value = authorization[len("PVEAPIToken") :].lstrip("= ")
            token_id, _, secret = value.rpartition("=")
            for tok in self.tokens:
                if tok.full_id == token_id and hmac.compare_digest(tok.secret, secret):
                    return Identity(tok.full_id, tok.privileges, ticket_auth=False)
            raise self._bad_credentials("token")
        ticket = cookie
        if ticket is None and authorization and authorization.startswith("PVEAuthCookie="):
            ticket = authorization.removeprefix("PVEAuthCookie=")
        if ticket is None:
            raise ApiError(401, "No ticket")
        user = self._ticket_user(urllib.parse.unquote(ticket))
        if user is None:
            raise self._bad_credentials("ticket")
        if method != "GET" and not self._csrf_ok(csrf, user):
            raise ApiError(401, "Permission denied - invalid csrf token")
        return Identity(user, self._privileges_of(user), ticket_auth=True)
