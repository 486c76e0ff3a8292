"""A small synchronous LSP client: starts `python -m dfm lsp` and talks to it as an editor does.

Used by tests/test_lsp.py and benchmarks/bench_lsp.py; handy for scripting too:

    with StdioClient() as c:
        c.initialize()
        c.open("file:///tmp/scene.dfm", text)
        diagnostics = c.diagnostics("file:///tmp/scene.dfm")

Messages are plain JSON (dicts), so what is checked is what goes over the wire. A reader thread
files responses by id and keeps every notification; requests the server sends (none today) are
answered with null so that it never waits on us.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .framing import MAX_MESSAGE_BYTES  # a larger Content-Length is a broken stream: never allocate it


class LspError(RuntimeError):
    pass


class StdioClient:
    def __init__(self, command: list[str] | None = None, *, timeout: float = 60.0, env: dict | None = None):
        self.command = command or [sys.executable, "-m", "dfm", "lsp"]
        self.timeout = timeout
        self._env = {**os.environ, **(env or {})}
        self._next_id = 0
        self._responses: dict[int, dict] = {}
        self.notifications: list[dict] = []
        self.broken = ""  # why the reader stopped reading a stream it cannot frame
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stderr_reader: threading.Thread | None = None
        self.stderr = b""
        self.versions: dict[str, int] = {}

    # -- process
    def start(self) -> StdioClient:
        self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=self._env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()
        return self

    def __enter__(self) -> StdioClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int | None:
        """shutdown + exit, then wait for the process (killed if it does not go)."""
        if self._proc is None:
            return None
        try:
            if self._proc.poll() is None:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
            code = self._proc.wait(timeout=10)
        except Exception:
            self._proc.kill()
            code = self._proc.wait()
        if self._stderr_reader is not None:
            self._stderr_reader.join(timeout=10)
        return code

    def _drain_stderr(self) -> None:
        assert self._proc and self._proc.stderr
        for line in self._proc.stderr:
            self.stderr += line

    def _read(self) -> None:
        assert self._proc and self._proc.stdout
        out = self._proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    with self._cond:
                        self._cond.notify_all()
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if length is None:
                continue
            if not 0 <= length <= MAX_MESSAGE_BYTES:  # a broken stream, not a message: stop reading it
                with self._cond:
                    self.broken = f"the server sent Content-Length {length} (at most {MAX_MESSAGE_BYTES})"
                    self._cond.notify_all()
                return
            message = json.loads(out.read(length))
            if "id" in message and "method" in message:  # a request from the server
                self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            with self._cond:
                if "id" in message:
                    self._responses[message["id"]] = message
                else:
                    self.notifications.append(message)
                self._cond.notify_all()

    def _send(self, message: dict) -> None:
        assert self._proc and self._proc.stdin
        body = json.dumps(message).encode("utf-8")
        self._proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._proc.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        """Bytes exactly as given, framing included: for tests of what a broken client sends."""
        assert self._proc and self._proc.stdin
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    # -- JSON-RPC
    def request(self, method: str, params: Any, timeout: float | None = None) -> Any:
        self._next_id += 1
        rid = self._next_id
        self._send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        with self._cond:
            self._wait(lambda: rid in self._responses, timeout, f"during {method}", f"no answer to {method}")
            response = self._responses.pop(rid)
        if "error" in response:
            raise LspError(f"{method}: {response['error']}")
        return response.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float | None = None, *,
                 after: int = 0) -> dict:
        """The first notification from index `after` on that satisfies `predicate`."""
        found: list[dict] = []

        def match() -> bool:
            found[:] = [n for n in self.notifications[after:] if predicate(n)][:1]
            return bool(found)

        with self._cond:
            self._wait(match, timeout, "", "no matching notification")
        return found[0]

    def _wait(self, ready: Callable[[], bool], timeout: float | None, during: str, what: str) -> None:
        """Wait (holding `_cond`) until `ready()`; LspError if the server exits first, TimeoutError after
        `timeout` (default: the client's)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not ready():
            if self.broken:
                raise LspError(self.broken)
            if self._proc is not None and self._proc.poll() is not None:
                raise LspError(f"the server exited ({self._proc.returncode}){' ' + during if during else ''}: "
                               f"{self.stderr.decode(errors='replace')[-2000:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} within {timeout or self.timeout} s")
            self._cond.wait(min(left, 0.5))

    # -- LSP conveniences
    def initialize(self, capabilities: dict | None = None, root_uri: str | None = None) -> dict:
        caps = capabilities if capabilities is not None else {
            "general": {"positionEncodings": ["utf-16"]},
            "textDocument": {
                "completion": {"completionItem": {"snippetSupport": True}},
                "hover": {"contentFormat": ["markdown", "plaintext"]},
                "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
                "publishDiagnostics": {"relatedInformation": True, "versionSupport": True},
                "codeAction": {"codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["quickfix", "source"]}}},
                "inlayHint": {},
            },
        }
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": root_uri, "capabilities": caps})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> int:
        """Open a document; returns the index of the next notification (for `diagnostics(after=...)`)."""
        mark = len(self.notifications)
        self.versions[uri] = version
        self.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "dfm", "version": version,
                                                              "text": text}})
        return mark

    def change(self, uri: str, text: str | None = None, *, range_: dict | None = None, new_text: str = "") -> int:
        """A whole-text change (`text`) or an incremental one (`range_` replaced by `new_text`)."""
        mark = len(self.notifications)
        self.versions[uri] += 1
        change = {"text": text} if text is not None else {"range": range_, "text": new_text}
        self.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": self.versions[uri]},
                                               "contentChanges": [change]})
        return mark

    def close(self, uri: str) -> None:
        self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    def diagnostics(self, uri: str, *, after: int = 0, timeout: float | None = None) -> list[dict]:
        """The diagnostics published for the current version of `uri` (after notification `after`)."""
        version = self.versions.get(uri)

        def match(n: dict) -> bool:
            p = n.get("params") or {}
            return (n.get("method") == "textDocument/publishDiagnostics" and p.get("uri") == uri
                    and p.get("version") == version)

        return self.wait_for(match, timeout, after=after)["params"]["diagnostics"]

    @staticmethod
    def position(line: int, character: int) -> dict:
        return {"line": line, "character": character}

    def at(self, method: str, uri: str, line: int, character: int, **extra) -> Any:
        return self.request(method, {"textDocument": {"uri": uri}, "position": self.position(line, character),
                                     **extra})


def apply_edits(text: str, edits: list[dict]) -> str:
    """Apply LSP TextEdits (UTF-16 positions) to `text`, last first, as an editor does."""
    from lsprotocol import types as lsp

    from .positions import LineIndex

    index = LineIndex(text)
    spans = []
    for e in edits:
        r = e["range"]
        start = index.offset(lsp.Position(r["start"]["line"], r["start"]["character"]))
        end = index.offset(lsp.Position(r["end"]["line"], r["end"]["character"]))
        spans.append((start, end, e["newText"]))
    for start, end, new in sorted(spans, key=lambda s: (s[0], s[1]), reverse=True):
        text = text[:start] + new + text[end:]
    return text
