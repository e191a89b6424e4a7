"""SemVer 2.0.0: the official grammar, precedence, and the sortable key the database uses."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from studio_integrations.core.semver import MAX_VERSION_LENGTH, InvalidSemVer, SemVer

# semver.org §11's example chain, in ascending precedence.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.9.0",
    "1.10.0",
    "1.11.0",
    "2.0.0-rc.1",
    "2.0.0",
    "2.1.0",
    "2.1.1",
    "10.0.0",
]


@pytest.mark.parametrize(
    "text",
    [
        "0.0.4",
        "1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
        "1.0.0-0A.is.legal",
        "2.0.0+build.1848",
        "1.0.0-x-y-z.--",
        "99999999999999999999999.999999999999999999.99999999999999999",
    ],
)
def test_valid_versions_round_trip(text: str) -> None:
    assert str(SemVer.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.2",
        "1.2.3-",
        "1.2.3+",
        "01.1.1",
        "1.01.1",
        "1.1.01",
        "1.2.3-0123",
        "1.2.3.4",
        "v1.2.3",
        "1.2.3-beta!",
        "1.2.3 ",
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits are not SemVer digits
        "1." + "1" * MAX_VERSION_LENGTH + ".0",
    ],
)
def test_invalid_versions_are_rejected(text: str) -> None:
    with pytest.raises(InvalidSemVer):
        SemVer.parse(text)


def test_precedence_follows_the_spec() -> None:
    parsed = [SemVer.parse(v) for v in SPEC_ORDER]
    for lower, higher in itertools.pairwise(parsed):
        assert lower < higher, (str(lower), str(higher))
        assert lower.sort_key < higher.sort_key, (str(lower), str(higher))
    shuffled = SPEC_ORDER[:]
    random.Random(7).shuffle(shuffled)
    assert [str(v) for v in sorted(SemVer.parse(v) for v in shuffled)] == SPEC_ORDER
    assert sorted(shuffled, key=lambda v: SemVer.parse(v).sort_key) == SPEC_ORDER


def test_the_issue_examples() -> None:
    assert SemVer.parse("1.10.0") > SemVer.parse("1.9.0")
    assert SemVer.parse("2.0.0-rc.1") < SemVer.parse("2.0.0")
    assert "1.10.0" < "1.9.0"  # why string order is not enough


def test_build_metadata_takes_no_part_in_precedence() -> None:
    a, b = SemVer.parse("1.0.0+build.1"), SemVer.parse("1.0.0+build.2")
    assert a == b
    assert a.sort_key == b.sort_key == SemVer.parse("1.0.0").sort_key
    assert str(a) != str(b)


def test_sort_key_is_lowercase_hex() -> None:
    key = SemVer.parse("1.0.0-Alpha.1+x").sort_key
    assert key == key.lower()
    assert set(key) <= set("0123456789abcdef")


_number = st.integers(min_value=0, max_value=10**6)  # keeps versions within the length limit
_alnum = st.from_regex(r"\A[0-9A-Za-z-]*[A-Za-z-][0-9A-Za-z-]*\Z").filter(lambda s: len(s) < 8)
_identifier = st.one_of(_number.map(str), _alnum)
_version = st.builds(
    lambda core, pre: SemVer.parse(".".join(map(str, core)) + ("-" + ".".join(pre) if pre else "")),
    st.tuples(_number, _number, _number),
    st.lists(_identifier, max_size=4),
)


@given(_version, _version)
def test_sort_key_orders_exactly_like_precedence(a: SemVer, b: SemVer) -> None:
    assert (a < b) == (a.sort_key < b.sort_key)
    assert (a == b) == (a.sort_key == b.sort_key)
