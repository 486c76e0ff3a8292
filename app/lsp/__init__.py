"""`dfm lsp`: a Language Server Protocol server for .dfm scenes, over standard input and output.

Editors get what `dfm check` and `dfm fmt` give on the command line — every diagnostic as you type,
formatting — plus completion, hover, inlay hints, an outline and quick fixes, all read from the
compiler's tables. Like `dfm check`, it never imports torch. See docs/editors.md.

- `positions.py`: dfm spans ↔ LSP positions (0-based, UTF-16 columns).
- `features.py`: the answers, as plain functions of a text and its compile result (no I/O).
- `server.py`: the pygls server: documents, debounced checks on a worker thread, the handlers.
- `client.py`: a small synchronous LSP client over a subprocess, for the tests and the benchmark.
"""

from __future__ import annotations

import logging
import sys


def serve(log_file: str | None = None) -> int:
    """Run the server on stdin/stdout until the client says `exit`."""
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import create_server

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() anywhere must not corrupt the protocol stream
    create_server().start_io(stdin, stdout)
    return 0
