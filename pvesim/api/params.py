"""Parameter checking the way PVE's JSONSchema does it, with PVE's exact messages.

Each endpoint declares its parameters here (written for the simulator, checked against the
official schema by the conformance test). Booleans accept only `0`/`1` in form data, as on a
real cluster; JSON bodies may also use true/false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

UNKNOWN_PROPERTY = (
    "property is not defined in schema and the schema does not allow additional properties"
)


class ApiError(Exception):
    """An error answer: status, message (its first line becomes the reason phrase), errors."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    @property
    def reason(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


def param_error(errors: dict[str, str]) -> ApiError:
    return ApiError(400, "Parameter verification failed.", errors)


@dataclass(frozen=True)
class Param:
    type: str  # string | integer | boolean | number
    optional: bool = True
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    format: str | None = None
    default: Any = None


NODE = Param(
    "string", optional=False, format="pve-node", pattern=r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?"
)
VMID = Param("integer", optional=False, format="pve-vmid", minimum=100, maximum=999_999_999)
BOOL = Param("boolean")
TIMEFRAME_9 = ("hour", "day", "week", "month", "year", "decade")
TIMEFRAME_8 = ("hour", "day", "week", "month", "year")
CF = Param("string", enum=("AVERAGE", "MAX"))

_INT = re.compile(r"^-?\d+$")
_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _check(name: str, spec: Param, raw: Any, json_body: bool) -> tuple[Any, str | None]:
    if spec.type == "boolean":
        if json_body and isinstance(raw, bool):
            return int(raw), None
        text = str(raw)
        if text in ("0", "1"):
            return int(text), None
        return None, f"type check ('boolean') failed - got '{text}'"
    if spec.type == "integer":
        text = str(raw)
        if isinstance(raw, bool) or not _INT.match(text):
            return None, f"type check ('integer') failed - got '{text}'"
        value: Any = int(text)
    elif spec.type == "number":
        text = str(raw)
        if isinstance(raw, bool) or not _NUM.match(text):
            return None, f"type check ('number') failed - got '{text}'"
        value = float(text)
    else:
        value = str(raw)
    if spec.enum is not None and value not in spec.enum:
        return (
            None,
            f"value '{value}' does not have a value in the enumeration '{', '.join(spec.enum)}'",
        )
    if spec.minimum is not None and value < spec.minimum:
        return None, f"value must have a minimum value of {_fmt(spec.minimum)}"
    if spec.maximum is not None and value > spec.maximum:
        return None, f"value may have a maximum value of {_fmt(spec.maximum)}"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, str(value)):
        if spec.format == "pve-node":
            return None, "invalid format - value does not look like a valid node name"
        return None, "value does not match the regex pattern"
    return value, None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def validate(
    specs: dict[str, Param], given: dict[str, Any], json_body: bool = False
) -> dict[str, Any]:
    """Checked and typed parameters, or ApiError 400 naming every bad one at once."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None:
            errors[name] = UNKNOWN_PROPERTY
            continue
        value, problem = _check(name, spec, raw, json_body)
        if problem:
            errors[name] = problem
        else:
            out[name] = value
    for name, spec in specs.items():
        if not spec.optional and name not in given:
            errors[name] = "property is missing and it is not optional"
        elif name not in out and spec.default is not None and name not in errors:
            out[name] = spec.default
    if errors:
        raise param_error(errors)
    return out
