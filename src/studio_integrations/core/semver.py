"""Semantic Versioning 2.0.0 (https://semver.org): parsing, precedence, and a sortable key.

API client versions are ordered by SemVer precedence everywhere they are listed, so
``1.10.0 > 1.9.0`` and ``2.0.0-rc.1 < 2.0.0``. Build metadata is kept but, as the spec says,
takes no part in precedence.

``SemVer.sort_key`` encodes precedence as a string whose plain ordering *is* precedence
order, so the database can sort and paginate clients by version without knowing SemVer.
Hand-written rather than the ``semver`` package: its ``Version.parse`` accepts ``"1.2.3\n"``
(its pattern ends in ``$``), and the sort key needs the parsed identifiers anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# The regular expression published on semver.org (numbered capture groups variant).
SEMVER_PATTERN = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)

# Longer strings are not versions anyone ships; the bound also keeps ``sort_key`` short.
MAX_VERSION_LENGTH = 64


class InvalidSemVer(ValueError):
    """The text is not a SemVer 2.0.0 version."""


@total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SemVer:
        if len(text) > MAX_VERSION_LENGTH:
            raise InvalidSemVer(f"a version has at most {MAX_VERSION_LENGTH} characters")
        match = SEMVER_PATTERN.match(text)
        if match is None:
            raise InvalidSemVer(f"'{text}' is not a SemVer 2.0.0 version (e.g. 1.4.0, 2.0.0-rc.1)")
        major, minor, patch, prerelease, build = match.groups()
        return cls(
            major=int(major),
            minor=int(minor),
            patch=int(patch),
            prerelease=tuple(prerelease.split(".")) if prerelease else (),
            build=tuple(build.split(".")) if build else (),
        )

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    def _precedence(self) -> tuple[object, ...]:
        # A release outranks every pre-release of the same core version (spec item 11.3).
        return (self.major, self.minor, self.patch, not self.prerelease, self._identifiers())

    def _identifiers(self) -> tuple[tuple[int, int, str], ...]:
        # Numeric identifiers compare numerically and rank below alphanumeric ones; a shorter
        # list of otherwise equal identifiers ranks lower (tuple comparison does that).
        return tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._precedence() == other._precedence()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._precedence() < other._precedence()

    def __hash__(self) -> int:
        return hash(self._precedence())

    @property
    def sort_key(self) -> str:
        """Precedence as lowercase hex: ``a.sort_key < b.sort_key`` iff ``a < b``.

        Hex digits order the same under every collation (PostgreSQL's locale ones included),
        which the raw bytes would not.
        """
        out = bytearray()
        for number in (self.major, self.minor, self.patch):
            out += _number(number)
        if not self.prerelease:
            out.append(2)
        else:
            out.append(1)
            for part in self.prerelease:
                if part.isdigit():
                    out.append(1)
                    out += _number(int(part))
                else:
                    # 0 ends the identifier: below every identifier character, so a prefix
                    # ranks lower ("alpha" < "alphab"), as ASCII ordering requires.
                    out += b"\x02" + part.encode("ascii") + b"\x00"
            out.append(0)  # end of list: below both identifier markers
        return out.hex()


def _number(value: int) -> bytes:
    # No leading zeros, so a longer digit string is a larger number.
    digits = str(value).encode("ascii")
    return bytes([len(digits)]) + digits
