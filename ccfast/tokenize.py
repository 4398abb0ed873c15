"""FreeSWITCH's argument splitter (``switch_separate_string``), reproduced exactly.

``callcenter_config`` splits its argument line with it (reference §7.1), so quoting, backslash
escapes, the ``^^<c>`` separator switch and the token limit must behave as in FreeSWITCH for
commands typed by operators and scripts to mean the same thing here.

Rules, as the C code does them:

* With the blank separator, runs of spaces separate tokens; a ``'`` toggles "inside quotes"
  (spaces inside do not separate); a backslash makes the splitter skip the next character.
* At most ``limit`` tokens; the last one receives the rest of the line (spaces included).
* Each token is then cleaned: leading spaces skipped, trailing unquoted spaces dropped, a ``'``
  is removed when it opens a quote that is closed later in the token (or closes one), and
  ``\\'``, ``\\"``, ``\\\\``, ``\\<separator>``, ``\\n``, ``\\r``, ``\\t``, ``\\s`` are unescaped;
  any other backslash stays as it is.
* A line starting with ``^^`` followed by at least two characters uses the third character
  as separator (``^^:a:b``). With a separator other than space, empty tokens are kept and a
  quote only toggles when another quote follows somewhere later in the line.
"""

from __future__ import annotations

ESCAPE = "\\"
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def _cleanup(token: str, delim: str | None) -> str:
    """``cleanup_separated_string``: strip quotes, unescape, trim spaces."""
    pos = 0
    size = len(token)
    while pos < size and token[pos] == " ":
        pos += 1
    out: list[str] = []
    end: int | None = None
    inside = False
    while pos < size:
        char = token[pos]
        escaped = False
        if char == ESCAPE:
            nxt = token[pos + 1] if pos + 1 < size else ""
            if nxt and (nxt in ("'", '"', ESCAPE) or nxt == delim):
                out.append(nxt)
                pos += 1
                end = len(out)
                escaped = True
            elif nxt in _UNESCAPE:
                out.append(_UNESCAPE[nxt])
                pos += 1
                end = len(out)
                escaped = True
        if not escaped:
            if char == "'" and (inside or "'" in token[pos + 1:]):
                inside = not inside
                if inside:
                    end = len(out)
            else:
                out.append(char)
                if char != " " or inside:
                    end = len(out)
        pos += 1
    if end is not None:
        del out[end:]
    return "".join(out)


def _split_blank(buf: str, limit: int) -> list[str]:
    """``separate_string_blank_delim``: raw tokens before cleanup."""
    bounds: list[list[int]] = []
    size = len(buf)
    pos = 0
    state = "start"
    inside = False
    while pos < size and len(bounds) < limit:
        if state == "start":
            bounds.append([pos, size])
            state = "skip_initial"
        elif state == "skip_initial":
            if buf[pos] == " ":
                pos += 1
            else:
                state = "find"
        elif state == "find":
            char = buf[pos]
            if char == ESCAPE:
                pos += 1  # the next character is never a separator
            elif char == "'":
                inside = not inside
            elif char == " " and not inside:
                bounds[-1][1] = pos
                state = "skip_ending"
            pos += 1
        else:  # skip_ending
            if buf[pos] == " ":
                pos += 1
            else:
                state = "start"
    return [buf[start:stop] for start, stop in bounds]


def _split_char(buf: str, delim: str, limit: int) -> list[str]:
    """``separate_string_char_delim``: raw tokens before cleanup."""
    bounds: list[list[int]] = []
    size = len(buf)
    pos = 0
    state = "start"
    inside = False
    while pos < size and len(bounds) < limit:
        if state == "start":
            bounds.append([pos, size])
            state = "find"
        else:
            char = buf[pos]
            if char == ESCAPE:
                pos += 1
            elif char == "'" and (inside or "'" in buf[pos + 1:]):
                inside = not inside
            elif char == delim and not inside:
                bounds[-1][1] = pos
                state = "start"
            pos += 1
    return [buf[start:stop] for start, stop in bounds]


def separate_string(text: str, delim: str = " ", limit: int = 8) -> list[str]:
    """Split ``text`` like ``switch_separate_string(text, delim, argv, limit)``.

    Returns the cleaned tokens (``argc`` is their count). ``limit`` >= 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if text.startswith("^^") and len(text) >= 4:
        delim = text[2]
        text = text[3:]
    if delim == " ":
        raw = _split_blank(text, limit)
        return [_cleanup(token, None) for token in raw]
    raw = _split_char(text, delim, limit)
    return [_cleanup(token, delim) for token in raw]
