"""ProxLB `plb_*` tags: any separator of `[,; ]`, any case, several groups per guest."""

from __future__ import annotations

import pytest

from engine.tags import TagRules, parse_tags, split_tags

PARSE = [
    ("plb_affinity_web", TagRules(affinity=("web",)), "a PVE affinity tag names its group"),
    (
        "plb_anti_affinity_db",
        TagRules(anti_affinity=("db",)),
        "an anti-affinity tag is not mistaken for an affinity tag",
    ),
    ("plb_pin_pve1", TagRules(pins=("pve1",)), "a pin tag names its node"),
    ("plb_ignore", TagRules(ignore=True), "bare plb_ignore ignores the guest"),
    ("plb_ignore_backup", TagRules(ignore=True), "plb_ignore_<anything> ignores the guest"),
    ("plb_ignored", TagRules(), "plb_ignored is not an ignore tag (no underscore after ignore)"),
    (
        "plb_affinity_web;plb_pin_pve2;prod",
        TagRules(affinity=("web",), pins=("pve2",)),
        "semicolons (PVE's own separator) split tags and foreign tags are skipped",
    ),
    (
        "plb_affinity_web,plb_anti_affinity_db",
        TagRules(affinity=("web",), anti_affinity=("db",)),
        "commas split tags",
    ),
    (
        "plb_pin_pve1 plb_pin_pve3",
        TagRules(
            pins=("pve1", "pve3"),
        ),
        "spaces split tags and pins repeat",
    ),
    (
        " plb_pin_pve1 ;, plb_ignore ,;",
        TagRules(pins=("pve1",), ignore=True),
        "runs of mixed separators and edge blanks leave no empty tags",
    ),
    (
        "PLB_Affinity_Web;Plb_Pin_PVE1",
        TagRules(affinity=("web",), pins=("pve1",)),
        "tags match in any case and group names are folded to lower case",
    ),
    (
        "plb_affinity_web;plb_affinity_WEB",
        TagRules(affinity=("web",)),
        "one group named twice in different case is one group",
    ),
    (
        "plb_affinity_a;plb_affinity_b;plb_anti_affinity_c;plb_anti_affinity_d",
        TagRules(affinity=("a", "b"), anti_affinity=("c", "d")),
        "a guest can be in several affinity and anti-affinity groups at once",
    ),
    (
        "plb_affinity_;plb_anti_affinity_;plb_pin_",
        TagRules(),
        "a prefix with an empty name is not a rule",
    ),
    ("", TagRules(), "no tags, no rules"),
    ("prod;web;backup", TagRules(), "tags without the plb_ prefix are not rules"),
]


@pytest.mark.parametrize(("tags", "expected", "_"), PARSE, ids=[c[2] for c in PARSE])
def test_parse_tags(tags, expected, _):
    assert parse_tags(tags) == expected


def test_a_tuple_of_tag_strings_is_read_like_one_joined_string():
    # Guest.tags is a tuple; each item may itself hold several separated tags
    assert parse_tags(("plb_affinity_a;plb_pin_pve1", "PLB_IGNORE", "plb_pin_pve2")) == TagRules(
        affinity=("a",), pins=("pve1", "pve2"), ignore=True
    )


SPLIT = [
    ("a;b", ["a", "b"], "a semicolon separates tags"),
    ("a,b", ["a", "b"], "a comma separates tags"),
    ("a b", ["a", "b"], "a space separates tags"),
    ("A;;B,, C", ["a", "b", "c"], "repeated mixed separators collapse and case is folded"),
    ([" a ", "B;c"], ["a", "b", "c"], "a list of strings is split item by item"),
    (";,", [], "separators alone give no tags"),
]


@pytest.mark.parametrize(("raw", "expected", "_"), SPLIT, ids=[c[2] for c in SPLIT])
def test_split_tags_accepts_every_separator(raw, expected, _):
    assert split_tags(raw) == expected
