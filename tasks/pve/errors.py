"""What can go wrong talking to PVE, sorted by what the caller should do about it.

- `TransientError`: the cluster could not answer (connection, timeout, 595/596, 5xx that is not
  a verdict). Safe to retry a read; the gateway does, with back-off.
- `RefusedError`: PVE looked at the request and said no ("VM is locked (migrate)"). Retrying
  gives the same answer, so it never is. `QuorumLostError` is the refusal that stops all moves.
- `AuthError` / `PrivilegeError` / `TlsError`: configuration is wrong; a person must act.

Messages are one line and name the user or token id, never a secret: proxmoxer and requests
never put credentials into the texts these are built from (tokens travel in a header, passwords
in a form body), and `classify` builds new messages rather than passing foreign ones through.
"""

from __future__ import annotations

import re
from typing import Any

import requests
from proxmoxer import AuthenticationError, ResourceException


class PveError(Exception):
    """Any failed call; `status` is the HTTP status (None when no answer came)."""

    def __init__(self, status: int | None, message: str, path: str) -> None:
        self.status = status
        self.message = " ".join(message.split())  # one line, whatever PVE sent
        self.path = path
        super().__init__(self.message)

    def __str__(self) -> str:
        code = f"HTTP {self.status}" if self.status is not None else "no answer"
        return f"{self.message} ({code} on {self.path})"


class TransientError(PveError):
    """The cluster could not answer now; the same call may work later."""


class RefusedError(PveError):
    """PVE refused the request; the same request will be refused again."""


class QuorumLostError(RefusedError):
    """The cluster has no quorum: PVE refuses every change, and proxflow moves nothing."""


class AuthError(PveError):
    """Bad credentials (401)."""


class TlsError(PveError):
    """The server's certificate could not be verified."""


class PrivilegeError(PveError):
    """The user or token lacks privileges; `missing` lists them as "Priv on /path"."""

    def __init__(self, who: str, missing: list[str], path: str) -> None:
        self.who = who
        self.missing = tuple(missing)
        by_path: dict[str, list[str]] = {}
        for item in missing:
            priv, _, acl = item.partition(" on ")
            by_path.setdefault(acl or "/", []).append(priv)
        flag = "--tokens" if "!" in who else "--users"
        grants = "; ".join(
            f"pveum acl modify {acl} {flag} {who} --roles <a role with {', '.join(privs)}>"
            for acl, privs in by_path.items()
        )
        super().__init__(
            403, f"{_kind(who)} {who} lacks {', '.join(missing)}; grant: {grants}", path
        )


def _kind(who: str) -> str:
    return "token" if "!" in who else "user"


# 500 answers that are PVE's verdict on the request (a `die` in the handler), not an outage
_REFUSAL = re.compile(
    r"is locked|can't |cannot |does not exist|no such |not available|is local node|"
    r"not a replication target|only root|not ha managed|error state|already |"
    r"hostname lookup|unable to get remote ip|not implemented|permission|"
    r"parameter verification",
    re.IGNORECASE,
)
_NO_QUORUM = re.compile(r"no quorum", re.IGNORECASE)
_PERMISSION = re.compile(r"Permission check failed \(([^,]+), ([^)]+)\)")
_TRANSIENT_STATUS = {502, 503, 504, 595, 596, 597, 598, 599}


def classify(exc: BaseException, path: str, who: str) -> PveError:
    """The `PveError` for a proxmoxer or requests exception raised while calling `path`."""
    if isinstance(exc, PveError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return TlsError(
            None,
            "TLS verification failed: the server's certificate is not signed by a trusted CA; "
            "set verify to the cluster's CA bundle path (e.g. /etc/pve/pve-root-ca.pem copied "
            "from a node), or to false only on a lab network",
            path,
        )
    if isinstance(exc, OSError) and "CA certificate bundle" in str(exc):
        return TlsError(None, f"the CA bundle given as verify cannot be read: {exc}", path)
    if isinstance(exc, requests.exceptions.InvalidHeader):  # its text would quote the token
        return AuthError(
            None,
            f"the credentials of {_kind(who)} {who} cannot be sent: they hold a space, "
            "line break or other character an HTTP header cannot carry",
            path,
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientError(None, "timed out waiting for the cluster", path)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return TransientError(None, "could not connect to the cluster", path)
    if isinstance(exc, AuthenticationError):
        return AuthError(401, f"authentication failed for user {who}: wrong user or password", path)
    if isinstance(exc, ResourceException):
        return _from_status(exc.status_code, str(exc.content or ""), exc.errors, path, who)
    return PveError(None, f"{type(exc).__name__}: {exc}", path)


def _from_status(status: int, message: str, errors: Any, path: str, who: str) -> PveError:
    detail = message.strip() or f"HTTP {status}"
    if isinstance(errors, dict) and errors and not isinstance(errors.get("errors"), bytes):
        detail += " " + "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(errors.items()))
    if status == 401:
        return AuthError(status, f"authentication failed for {_kind(who)} {who}: {detail}", path)
    if status == 403:
        m = _PERMISSION.search(message)
        if m:
            return PrivilegeError(who, [f"{m.group(2)} on {m.group(1)}"], path)
        return RefusedError(status, f"{_kind(who)} {who} may not do this: {detail}", path)
    if _NO_QUORUM.search(message):
        return QuorumLostError(status, detail, path)
    if status in _TRANSIENT_STATUS:
        return TransientError(status, detail, path)
    if status == 400 or (status == 500 and _REFUSAL.search(message)):
        return RefusedError(status, detail, path)
    if status >= 500 and status != 501:
        return TransientError(status, detail, path)
    return PveError(status, detail, path)
