"""Strict JSON for everything a caller sends: only standard JSON, so only standard JSON is signed.

Python's ``json`` accepts more than RFC 8259: ``NaN``/``Infinity``, numbers that overflow to
infinity (``1e400``), lone UTF-16 surrogates (``"\\ud800"``, which then fail UTF-8 encoding deep
inside token signing), duplicate member names (the last one silently wins) and nesting up to the
interpreter's recursion limit. Request bodies, JSON runtime/init-time data and policy JWS parts
are read with :func:`loads_strict`, which refuses all of these as malformed input (400) before any
of it can reach a token.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from confnode.errors import InvalidInput

#: Deepest container nesting accepted (top-level object or array = 1). MAA bodies need 3.
MAX_DEPTH = 64
#: I-JSON (RFC 7493 §2.2): integers beyond ±(2^53 - 1) do not survive other parsers intact.
MAX_SAFE_INTEGER = 2**53 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


class NotStandardJson(InvalidInput):
    """JSON that parses in Python but is not standard (or sane) JSON."""


def _constant(name: str) -> Any:
    raise NotStandardJson(f"{name} is not a JSON value")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStandardJson(f"number {text[:32]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 17:  # cheaper than converting 4,000 digits first
        raise NotStandardJson(f"integer {text[:32]}… is outside ±(2^53 - 1)")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise NotStandardJson(f"integer {text} is outside ±(2^53 - 1)")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose member names are unique (I-JSON, RFC 7493 §2.3). Python keeps the
    last of duplicates, other parsers the first: a relying party reading the same runtimeData
    could see another enclave key than the one the token names."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise NotStandardJson(f"member {name[:64]!r} appears more than once")
            seen.add(name)
    return obj


def _check_text(text: str) -> None:
    if text.isascii():  # O(1) in CPython, and the common case (base64, hex, claim names)
        return
    found = _SURROGATE.search(text)
    if found is not None:
        raise NotStandardJson(
            f"string contains a lone UTF-16 surrogate \\u{ord(found.group()):04x} "
            f"at offset {found.start()}"
        )


def check_standard(value: Any) -> None:
    """Raise :class:`NotStandardJson` for lone surrogates or nesting deeper than MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise NotStandardJson(f"nesting deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, member in item.items():
                    _check_text(key)
                    stack.append((member, depth + 1))
            else:
                stack.extend((member, depth + 1) for member in item)


def loads_strict(data: bytes | str, what: str) -> Any:
    """Parse standard JSON; anything else is :class:`InvalidInput` naming ``what``."""
    try:
        value = json.loads(
            data,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
        check_standard(value)
    except NotStandardJson as error:
        raise NotStandardJson(f"{what} is not standard JSON: {error.message}") from error
    except (ValueError, RecursionError) as error:  # RecursionError: nesting beyond the stack
        raise InvalidInput(f"{what} is not JSON: {error}") from error
    return value
