"""Where the cluster is and how to log in: validated once, secrets kept as `SecretStr`."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# pveproxy gives up on a proxied call after 30 s and answers 595; waiting a little longer lets
# that clear answer arrive instead of a bare client timeout (proxmoxer's own default is 5 s)
DEFAULT_TIMEOUT = 35.0


class PveEndpoint(BaseModel):
    """A PVE API endpoint: API token (recommended) or user + password."""

    # pydantic would echo the raw input (passwords included) in its error messages
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(min_length=1)
    port: int = Field(8006, ge=1, le=65535)
    user: str = "root@pam"
    token_name: str | None = None
    token_value: SecretStr | None = None
    password: SecretStr | None = None
    verify: bool | str = True  # True, False, or the path of a PEM CA bundle
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=600)

    @field_validator("host")
    @classmethod
    def _bare_host(cls, value: str) -> str:
        if "://" in value or "/" in value:
            raise ValueError(f"give a bare host name or address, not a URL: {value!r}")
        return value

    @field_validator("user")
    @classmethod
    def _user_with_realm(cls, value: str) -> str:
        if "@" not in value or value.startswith("@") or "!" in value:
            raise ValueError(
                f"expected USER@REALM such as root@pam, got {value!r} "
                "(the token id goes in token_name)"
            )
        return value

    @field_validator("token_name")
    @classmethod
    def _token_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", value):
            raise ValueError(
                f"{value!r} is not a PVE token id (a letter, then letters, digits, . _ or -)"
            )
        return value

    @field_validator("token_value")
    @classmethod
    def _token_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (
            not value.get_secret_value() or any(c.isspace() for c in value.get_secret_value())
        ):
            raise ValueError("the token secret is empty or holds whitespace (not shown)")
        return value

    @field_validator("verify")
    @classmethod
    def _bundle_exists(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not Path(value).is_file():
            raise ValueError(
                f"CA bundle {value!r} is not a file; give true, false or the path of a PEM file"
            )
        return value

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> PveEndpoint:
        token = self.token_name is not None or self.token_value is not None
        if token and (self.token_name is None or self.token_value is None):
            missing = "token_value" if self.token_value is None else "token_name"
            raise ValueError(f"{missing} is required when the other token field is set")
        if token and self.password is not None:
            raise ValueError("give either token_name + token_value or password, not both")
        if not token and self.password is None:
            raise ValueError("no credentials: give token_name + token_value, or password")
        return self

    @property
    def who(self) -> str:
        """The identity PVE sees: `user!token` for tokens, else the user."""
        return f"{self.user}!{self.token_name}" if self.token_name else self.user

    @property
    def address(self) -> str:
        """`host:port` as proxmoxer takes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
