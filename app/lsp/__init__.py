"""`dfm lsp`: a Language Server Protocol server for .dfm scenes, over standard input and output.

Editors get what `dfm check` and `dfm fmt` give on the command line — every diagnostic as you type,
formatting — plus completion, hover, inlay hints, an outline and quick fixes, all read from the
compiler's tables. Like `dfm check`, it never imports torch. See docs/editors.md.

- `positions.py`: dfm spans ↔ LSP positions (0-based, UTF-16 columns).
- `features.py`: a document's analysis (one compile per version), its diagnostics, quick fixes and formatting.
- `hover.py`, `outline.py` (inlay hints, symbols), `completion.py`: the other answers; `describe.py` holds the
  text they share. All plain functions of a text and its compile result (no I/O).
- `server.py`: the pygls server: documents, debounced checks on a worker thread, the handlers; `serve` runs it.
- `client.py`: a small synchronous LSP client over a subprocess, for the tests and the benchmark.

This file imports nothing, so the modules above can import each other (`from . import features`) without a
cycle through the package.
"""
