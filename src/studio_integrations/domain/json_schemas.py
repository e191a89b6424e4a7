"""Tenant-supplied JSON Schemas, evaluated in linear time and off the event loop.

A provider's ``configurationSchema`` is written by a tenant, so its ``pattern`` and
``patternProperties`` regular expressions are hostile input: Python's backtracking ``re`` takes
exponential time on ``^(a+)+$`` against ``"aaaa…!"``. Here both keywords run on RE2
(``google-re2``), whose matching time is linear in the input; a pattern RE2 cannot compile
(backreferences, look-around) is refused when the schema is saved (``unsupported_patterns``)
and fails validation when met in a stored schema. ``validate_off_loop`` runs the whole check
in a small worker pool with a time budget, so even a large, legitimate validation never holds
the event loop that every other request needs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import re2
from jsonschema import validators as jsonschema_validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

T = TypeVar("T")

# Wall-clock budget of one validation in the worker pool; past it the request gets a field
# error (the worker finishes on its own: RE2 is linear, so it cannot run away).
VALIDATION_BUDGET_SECONDS = 2.0
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="json-schema")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is a field error, not a log line
# RE2's default program size budget (8 MiB) is far above what a 64 KiB schema needs.
_RE2_OPTIONS.max_mem = 8 << 20


class PatternUnsupported(ValueError):
    """RE2 cannot compile the pattern (backreference, look-around, bad syntax)."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> Any:
    """The RE2 program for a JSON Schema (ECMA-262-ish) pattern; raises ``PatternUnsupported``."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except (re2.error, TypeError, ValueError) as exc:
        raise PatternUnsupported(str(exc)) from None


def _pattern(validator: Validator, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "string"):
        return
    try:
        program = compile_pattern(pattern)
    except PatternUnsupported:
        yield ValidationError(f"the schema's pattern {pattern[:80]!r} is not supported")
        return
    if program.search(instance) is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


def _pattern_properties(
    validator: Any, pattern_properties: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        try:
            program = compile_pattern(pattern)
        except PatternUnsupported:
            yield ValidationError(f"the schema's pattern {pattern[:80]!r} is not supported")
            continue
        for key, value in instance.items():
            if program.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """jsonschema's own, except that ``patternProperties`` are matched with RE2 (the
    original joins them into one pattern for Python's ``re``)."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    try:
        programs = [compile_pattern(p) for p in patterns]
    except PatternUnsupported:
        yield ValidationError("the schema's patternProperties are not supported")
        return
    extras = [
        key
        for key in instance
        if key not in properties and not any(p.search(key) is not None for p in programs)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        listed = ", ".join(repr(each[:80]) for each in sorted(extras)[:10])
        yield ValidationError(f"additional properties are not allowed ({listed} unexpected)")


@functools.cache
def _linear(base: type[Validator]) -> type[Validator]:
    validator: type[Validator] = jsonschema_validators.extend(  # type: ignore[no-untyped-call]
        base,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )
    return validator


def linear_validator_for(schema: Mapping[str, Any] | bool) -> type[Validator]:
    """The schema's dialect (Draft 2020-12 by default) with RE2 ``pattern``,
    ``patternProperties`` and ``additionalProperties``. ``unevaluatedProperties`` would still
    match ``patternProperties`` with Python's ``re``: ``unsupported_patterns`` refuses schemas
    that combine the two."""
    base = jsonschema_validators.validator_for(
        schema, default=jsonschema_validators.Draft202012Validator
    )
    return _linear(base)


def unsupported_patterns(schema: Any, path: str = "") -> list[tuple[str, str]]:
    """``(where, why)`` for each ``pattern`` value and ``patternProperties`` key of ``schema``
    (anywhere in it) that RE2 cannot compile, and for ``patternProperties`` in a schema that
    also uses ``unevaluatedProperties`` (jsonschema evaluates that pair with Python's
    backtracking ``re``)."""
    found: list[tuple[str, str]] = []
    keywords: set[str] = set()
    stack: list[tuple[Any, str]] = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                try:
                    compile_pattern(pattern)
                except PatternUnsupported as exc:
                    found.append((f"{where}/pattern", str(exc)))
            keywords.update(k for k in ("patternProperties", "unevaluatedProperties") if k in node)
            pattern_properties = node.get("patternProperties")
            if isinstance(pattern_properties, dict):
                for key in pattern_properties:
                    try:
                        compile_pattern(key)
                    except PatternUnsupported as exc:
                        found.append((f"{where}/patternProperties/{key}", str(exc)))
            stack.extend((v, f"{where}/{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}/{i}") for i, v in enumerate(node))
    if len(keywords) == 2:
        found.append((path, "patternProperties cannot be combined with unevaluatedProperties"))
    return sorted(found)


class ValidationBudgetExceeded(Exception):
    """The validation did not finish within ``VALIDATION_BUDGET_SECONDS``."""


async def validate_off_loop(check: Callable[[], T], *, budget: float | None = None) -> T:
    """Run ``check`` in the schema worker pool; ``ValidationBudgetExceeded`` past ``budget``
    (default ``VALIDATION_BUDGET_SECONDS``)."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_POOL, check)
    timeout = VALIDATION_BUDGET_SECONDS if budget is None else budget
    done, _ = await asyncio.wait({future}, timeout=timeout)
    if not done:
        future.cancel()
        raise ValidationBudgetExceeded
    return future.result()
