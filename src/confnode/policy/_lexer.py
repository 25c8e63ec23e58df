"""Tokenizer for MAA's claim-rule language.

Positions are 1-based line/column so that every parse error can point at the offending character.
The lexer only ever raises :class:`PolicyParseError`; arbitrary text (including control characters
and "smart quotes" copied from web pages) is reported, never crashed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from confnode.policy._errors import PolicyParseError


class Kind(Enum):
    IDENT = "identifier"
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"  # only used for the version, e.g. 1.0
    PUNCT = "punctuation"
    EOF = "end of policy"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    line: int
    column: int
    offset: int

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "end of policy"
        return f"{self.kind.value} {self.text!r}"


#: Multi-character operators first so that the longest match wins.
_PUNCT: tuple[str, ...] = (
    *("==", "!=", "<=", ">=", "=>", "&&"),
    *("=", "<", ">", ";", ",", ":", ".", "[", "]", "(", ")", "{", "}", "!"),
)

_SMART_QUOTES = {"\u201c", "\u201d", "\u2018", "\u2019", "\u201e"}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; ``//`` and ``/* */`` comments and whitespace are skipped."""
    tokens: list[Token] = []
    i = 0
    line = 1
    line_start = 0
    n = len(text)
    while i < n:
        ch = text[i]
        col = i - line_start + 1
        if ch == "\n":
            i += 1
            line += 1
            line_start = i
            continue
        if ch in " \t\r\f\v":
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise PolicyParseError("unterminated /* comment", line=line, column=col)
            for j in range(i, end + 2):
                if text[j] == "\n":
                    line += 1
                    line_start = j + 1
            i = end + 2
            continue
        if ch == '"':
            value, end = _string(text, i, line, line_start)
            tokens.append(Token(Kind.STRING, value, line, col, i))
            i = end
            continue
        if ch.isascii() and (ch.isdigit() or (ch == "-" and i + 1 < n and text[i + 1].isdigit())):
            j = i + 1
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            kind = Kind.INTEGER
            if j + 1 < n and text[j] == "." and text[j + 1].isascii() and text[j + 1].isdigit():
                j += 1
                while j < n and text[j].isascii() and text[j].isdigit():
                    j += 1
                kind = Kind.NUMBER
            tokens.append(Token(kind, text[i:j], line, col, i))
            i = j
            continue
        if ch.isascii() and (ch.isalpha() or ch in "_$"):
            j = i + 1
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] in "_-$"):
                j += 1
            tokens.append(Token(Kind.IDENT, text[i:j], line, col, i))
            i = j
            continue
        for punct in _PUNCT:
            if text.startswith(punct, i):
                tokens.append(Token(Kind.PUNCT, punct, line, col, i))
                i += len(punct)
                break
        else:
            hint = " (use ASCII double quotes)" if ch in _SMART_QUOTES else ""
            raise PolicyParseError(f"unexpected character {ch!r}{hint}", line=line, column=col)
    col = n - line_start + 1
    tokens.append(Token(Kind.EOF, "", line, col, n))
    return tokens


def _string(text: str, start: int, line: int, line_start: int) -> tuple[str, int]:
    """Read a one-line double-quoted string with ``\\"``/``\\\\`` escapes; return it and its end."""
    start_col = start - line_start + 1
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if nxt not in '"\\':
                raise PolicyParseError(
                    f'unknown escape \\{nxt} in string (only \\" and \\\\ are allowed)',
                    line=line,
                    column=i - line_start + 1,
                )
            out.append(nxt)
            i += 2
            continue
        if ch == "\n":
            raise PolicyParseError(
                "string not closed before end of line", line=line, column=start_col
            )
        out.append(ch)
        i += 1
    raise PolicyParseError("unterminated string", line=line, column=start_col)
