"""The stdin framing guard: `Content-Length` headers checked before pygls sees them.

pygls reads a header with `int()` of however many digits arrive and then reads that many bytes, so
`Content-Length: 10^12` raised MemoryError, 10 MB of digits ValueError (both ended the server), and a
missing, negative or non-numeric length left it waiting for a blank line it had already passed, deaf for
good. `FramedReader` sits between stdin and pygls' `StdinAsyncReader` (which only calls `readline()` and
`read(n)`): it reads whole messages itself, with every line and length bounded, and hands pygls only
well-formed ones, each as `Content-Length: N`, a blank line and the body. A bad message is dropped with a
logged error and reading resumes at the next `Content-Length` header, so the server keeps serving.
"""

from __future__ import annotations

import logging
import re
from typing import BinaryIO

log = logging.getLogger(__name__)

# A didOpen of the largest scene the parser takes (dsl.parser.MAX_SOURCE_LENGTH, 8 Mi characters) is at most
# 6 bytes a character in JSON (`\u001b`), 48 MiB; nothing an editor sends for a scene is larger.
MAX_MESSAGE_BYTES = 64 << 20
MAX_HEADER_LINE = 1024  # bytes in one header line; the two LSP headers need under 100
CHUNK = 64 << 10  # what is read at a time while skipping a long line or a dropped body
TAIL = 64  # bytes kept of a long line: enough for a `Content-Length` header glued to its end
_LENGTH_AT_END = re.compile(rb"Content-Length: ([0-9]{1,20})\r?\n\Z")  # where resynchronising resumes


class _EOF(Exception):
    pass


class _Drop(Exception):
    """A message that cannot be delivered. `skip`: its body's length, when that is known and sane (skipped
    exactly); `found`: the length in a header that began the next message (found while reading this one)."""

    def __init__(self, why: str, *, skip: int | None = None, found: int | None = None) -> None:
        super().__init__(why)
        self.skip, self.found = skip, found


def _length(value: bytes) -> tuple[int | None, str | None]:
    """A Content-Length value as (length, None), or (None, why it is refused)."""
    value = value.strip()
    if not (value.isdigit() and len(value) <= 20):  # digits only: no sign, no spaces, no 10 MB of them
        return None, f"Content-Length {value[:40]!r}{'…' if len(value) > 40 else ''} is not a length"
    n = int(value)
    if n > MAX_MESSAGE_BYTES:
        return None, f"Content-Length {n:,} is over the limit of {MAX_MESSAGE_BYTES:,} bytes"
    return n, None


class FramedReader:
    """A stdin for pygls (`readline()`, `read(n)`) that yields only well-formed messages; see the module."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._lines: list[bytes] = []
        self._body = b""

    # -- what pygls calls, from one reader thread at a time
    def readline(self) -> bytes:
        if not self._lines:
            body = self._next_message()
            if body is None:
                return b""  # end of input: pygls stops
            self._body = body
            self._lines = [b"Content-Length: %d\r\n" % len(body), b"\r\n"]
        return self._lines.pop(0)

    def read(self, n: int) -> bytes:
        body, self._body = self._body, b""
        return body

    # -- framing
    def _next_message(self) -> bytes | None:
        found: int | None = None  # a length from a header that begins the next message, read already
        try:
            while True:
                try:
                    return self._message(found)
                except _Drop as drop:
                    log.error("dfm lsp: dropped a malformed message: %s", drop)
                    found = drop.found
                    if found is None and drop.skip is not None:
                        self._discard(drop.skip)
                    elif found is None:
                        found = self._resync()
        except _EOF:
            return None

    def _message(self, found: int | None) -> bytes:
        length, problem, seen, length_ok = found, None, found is not None, found is not None
        while True:
            line, cut = self._line()
            if not line.strip() and not cut:
                if seen:
                    break
                continue  # blank lines between messages
            seen = True
            name, colon, value = line.partition(b":")
            if cut or not colon:
                m = _LENGTH_AT_END.search(line)
                if m and _length(m.group(1))[0] is not None:  # an unframed body, then the next header
                    raise _Drop(problem or "a body without a usable Content-Length",
                                found=_length(m.group(1))[0])
                problem = problem or (f"a header line over {MAX_HEADER_LINE} bytes" if cut
                                      else f"a header line without a colon: {line[:40]!r}")
            elif name.strip() == b"Content-Length":
                length, why = _length(value)
                length_ok = length is not None
                problem = problem or why
        if problem is not None:
            raise _Drop(problem, skip=length if length_ok else None)
        if length is None:
            raise _Drop("no Content-Length header")
        if length == 0:
            raise _Drop("an empty body", skip=0)
        body = self.raw.read(length)
        if len(body) < length:
            raise _EOF
        return body

    def _resync(self) -> int:
        """Skip to the next line that ends in a usable `Content-Length` header; its length."""
        while True:
            line, _ = self._line()
            m = _LENGTH_AT_END.search(line)
            if m:
                length, why = _length(m.group(1))
                if length is not None:
                    return length
                log.error("dfm lsp: dropped a malformed message: %s", why)

    def _line(self) -> tuple[bytes, bool]:
        """The next line, whole up to MAX_HEADER_LINE bytes; of a longer one only its last TAIL bytes,
        with True. Memory stays bounded whatever arrives."""
        line = self.raw.readline(MAX_HEADER_LINE)
        if not line:
            raise _EOF
        cut = False
        while not line.endswith(b"\n"):
            more = self.raw.readline(CHUNK)
            if not more:
                raise _EOF
            line, cut = (line + more)[-TAIL:], True
        return line, cut

    def _discard(self, n: int) -> None:
        while n > 0:
            got = self.raw.read(min(n, CHUNK))
            if not got:
                raise _EOF
            n -= len(got)
