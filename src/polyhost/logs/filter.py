"""CloudWatch Logs filter patterns for unstructured lines: terms, phrases, exclusions, options.

The subset of CloudWatch's syntax that makes sense for raw container output, with its meaning:

- `ERROR Timeout`: every term must appear in the line (case-sensitive, anywhere);
- `"connection reset"`: a quoted phrase is one term, spaces included (`\\"` is a quote inside);
- `-DEBUG`, `-"health check"`: the line must not contain that term;
- `?ERROR ?WARN`: at least one of the `?` terms must appear;
- an empty pattern (or only spaces) matches every line.

JSON (`{ $.level = ... }`) and space-delimited (`[ip, user, ...]`) patterns describe structured
events and are refused with a message saying what is supported, rather than matched wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

from polyhost.errors import InvalidParameterException

MAX_PATTERN_CHARS = 1024  # CloudWatch's own limit (FilterPattern, max 1024)
SUPPORTED = 'terms (all must appear), "quoted phrases", -exclusions and ?alternatives'


@dataclass(frozen=True)
class FilterPattern:
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def __call__(self, message: str) -> bool:
        if any(term not in message for term in self.required):
            return False
        if any(term in message for term in self.excluded):
            return False
        return not self.optional or any(term in message for term in self.optional)

    @property
    def matches_all(self) -> bool:
        return not (self.required or self.excluded or self.optional)


def parse_filter(pattern: str) -> FilterPattern:
    """Parse `pattern`; InvalidParameterException says what is wrong and what is accepted."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidParameterException(
            f"filterPattern is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}."
        )
    text = pattern.strip()
    if text.startswith(("{", "[")):
        kind = "JSON" if text.startswith("{") else "space-delimited"
        raise InvalidParameterException(
            f"Invalid filterPattern: {kind} patterns are not supported here; container output "
            f"is unstructured text. Use {SUPPORTED}."
        )
    required: list[str] = []
    excluded: list[str] = []
    optional: list[str] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        kind = text[index] if text[index] in "-?" else ""
        start = index + len(kind)
        if start < len(text) and text[start] == '"':
            term, index = _phrase(text, start)
        else:
            end = start
            while end < len(text) and not text[end].isspace():
                if text[end] == '"':
                    raise InvalidParameterException(
                        f"Invalid filterPattern: a quote at character {end + 1} is inside a "
                        'term; quote the whole term ("like this") or leave the quote out.'
                    )
                end += 1
            term, index = text[start:end], end
        if not term:
            what = f"'{kind}' with no term after it" if kind else 'an empty phrase ("")'
            raise InvalidParameterException(
                f"Invalid filterPattern: {what} at character {start}; write a word or a "
                f"non-empty phrase there. Supported: {SUPPORTED}."
            )
        {"-": excluded, "?": optional, "": required}[kind].append(term)
    return FilterPattern(tuple(required), tuple(excluded), tuple(optional))


def _phrase(text: str, quote: int) -> tuple[str, int]:
    """The phrase opened by the quote at `quote`, and the index after its closing quote."""
    chars: list[str] = []
    index = quote + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in '"\\':
            chars.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            after = index + 1
            if after < len(text) and not text[after].isspace():
                raise InvalidParameterException(
                    f"Invalid filterPattern: the phrase closed at character {index + 1} is "
                    "followed by more text; put a space after the closing quote."
                )
            return "".join(chars), after
        chars.append(char)
        index += 1
    raise InvalidParameterException(
        f"Invalid filterPattern: the quote at character {quote + 1} is never closed; "
        'close the phrase with " or leave the quote out.'
    )
