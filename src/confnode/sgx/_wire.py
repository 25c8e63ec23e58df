"""Bounded little-endian reading and fixed-size field checks shared by the SGX codecs.

Every failure is an :class:`~confnode.errors.InvalidQuote` naming the field and the absolute
byte offset, so a caller can point at the exact spot of a malformed quote or structure.
"""

from __future__ import annotations

from confnode.errors import InvalidQuote


class Reader:
    """Reads consecutive fields of ``data`` and reports offsets relative to ``base``."""

    __slots__ = ("_data", "_end", "base", "pos")

    def __init__(self, data: bytes, *, base: int = 0, start: int = 0, end: int | None = None):
        self._data = data
        self._end = len(data) if end is None else end
        self.base = base
        self.pos = start

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte, as reported in errors."""
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def take(self, n: int, field: str) -> bytes:
        if n > self._end - self.pos:
            raise InvalidQuote(
                f"truncated: need {n} bytes, only {self._end - self.pos} available",
                field=field,
                offset=self.offset,
            )
        chunk = self._data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "little")

    def u64(self, field: str) -> int:
        return int.from_bytes(self.take(8, field), "little")


def check_exact(data: bytes, size: int, field: str, offset: int = 0) -> None:
    """A fixed-size structure must be given exactly its size: no silent truncation or slack."""
    if len(data) != size:
        raise InvalidQuote(
            f"{len(data)} bytes, expected exactly {size}", field=field, offset=offset
        )


def check_bytes(value: object, size: int, field: str) -> None:
    """Constructor-time check of a fixed-size byte field."""
    if not isinstance(value, bytes) or len(value) != size:
        found = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise InvalidQuote(f"{found}, expected {size} bytes", field=field)


def check_uint(value: object, bits: int, field: str) -> None:
    """Constructor-time check of an unsigned little-endian integer field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise InvalidQuote(f"{value!r} is not an unsigned {bits}-bit integer", field=field)


def le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def check_type(value: object, kind: type, field: str) -> None:
    """Constructor-time check of a nested structure field."""
    if not isinstance(value, kind):
        raise InvalidQuote(f"{type(value).__name__}, expected {kind.__name__}", field=field)
