"""ProxLB-compatible `plb_*` tags, read defensively.

PVE stores tags `;`-separated and lower-cased, but hand-edited configs and other tools use
commas or spaces and mixed case, so every separator and any case is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPLIT = re.compile(r"[,; ]+")
AFFINITY = "plb_affinity_"
ANTI_AFFINITY = "plb_anti_affinity_"
PIN = "plb_pin_"
IGNORE = "plb_ignore"


@dataclass(frozen=True)
class TagRules:
    affinity: tuple[str, ...] = ()
    anti_affinity: tuple[str, ...] = ()
    pins: tuple[str, ...] = ()
    ignore: bool = False


def split_tags(tags: tuple[str, ...] | list[str] | str) -> list[str]:
    raw = [tags] if isinstance(tags, str) else list(tags)
    out: list[str] = []
    for item in raw:
        out.extend(t.lower() for t in _SPLIT.split(item.strip()) if t)
    return out


def parse_tags(tags: tuple[str, ...] | list[str] | str) -> TagRules:
    affinity: set[str] = set()
    anti: set[str] = set()
    pins: set[str] = set()
    ignore = False
    for tag in split_tags(tags):
        if tag.startswith(ANTI_AFFINITY) and len(tag) > len(ANTI_AFFINITY):
            anti.add(tag[len(ANTI_AFFINITY) :])
        elif tag.startswith(AFFINITY) and len(tag) > len(AFFINITY):
            affinity.add(tag[len(AFFINITY) :])
        elif tag.startswith(PIN) and len(tag) > len(PIN):
            pins.add(tag[len(PIN) :])
        elif tag == IGNORE or tag.startswith(IGNORE + "_"):
            ignore = True
    return TagRules(tuple(sorted(affinity)), tuple(sorted(anti)), tuple(sorted(pins)), ignore)
