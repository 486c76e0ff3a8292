"""The pygls server: documents in, diagnostics and answers out.

Each open document keeps its own text (changes applied here with LSP's line rules, see positions.py)
and a revision counter. Every change restarts a short timer (`DEBOUNCE_S`); when it fires, the text is
compiled on one worker thread, so a long scene never blocks completion, and the diagnostics are
published if no newer text has arrived meanwhile; a queued compile whose text has been replaced by the
time the worker reaches it is skipped. Inlay hints, symbols and code actions wait for the compile of the
current text (or reuse it), so they never describe an older version. Hover waits at most `HOVER_BUDGET_S`
when the last finished analysis still covers the text under the pointer (the text before or after the
edit is unchanged) and then answers from that one: a scene that takes long to check never makes the
pointer wait. Formatting runs on the same worker: the parser is used from one thread only.

`dfm.app.lsp.features` (and with it the compiler, numpy and lark) is imported on the worker right after
`initialized`, not before `initialize` is answered, so the server starts in the time pygls takes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from ... import __version__
from .framing import FramedReader
from .positions import LineIndex

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.15  # wait this long after the last keystroke before checking again
HOVER_BUDGET_S = 1.0  # then hover answers from the last finished analysis, where that still applies
FEATURE_BUDGET_S = 1.0  # inlay hints, symbols, code actions: then the last analysis of the same text, or nothing


@dataclass(eq=False)
class Document:
    uri: str
    text: str
    version: int | None
    revision: int = 0  # bumped on every change; an analysis is current when its revision matches
    closed: bool = False
    timer: asyncio.TimerHandle | None = None
    pending: asyncio.Future | None = None  # the analysis of `pending_revision`, running or done
    pending_revision: int = -1
    last: Any = None  # the newest finished Analysis, of any revision: what hover falls back on
    _index: LineIndex | None = field(default=None, repr=False)

    def index(self, encoding: str) -> LineIndex:
        if self._index is None or self._index.text is not self.text or self._index.encoding != encoding:
            self._index = LineIndex(self.text, encoding)
        return self._index

    def location(self) -> tuple[str, Path | None]:
        """The file path diagnostics are about and the folder relative paths start from (None for an
        unsaved buffer: file checks are skipped, as for `dfm check -`)."""
        path = to_fs_path(self.uri)
        return ("<string>", None) if path is None else (path, Path(path).parent)


class DfmLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("dfm", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.documents: dict[str, Document] = {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dfm-check")
        self.tasks: set[asyncio.Task] = set()

    # -- client capabilities
    @property
    def encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except RuntimeError:  # no workspace before `initialize`
            return "utf-16"
        return str(getattr(enc, "value", enc) or "utf-16")

    def _capability(self, *path: str):
        node = self.client_capabilities
        for name in path:
            node = getattr(node, name, None)
            if node is None:
                return None
        return node

    @property
    def snippets(self) -> bool:
        return bool(self._capability("text_document", "completion", "completion_item", "snippet_support"))

    @property
    def insert_replace(self) -> bool:
        return bool(self._capability("text_document", "completion", "completion_item", "insert_replace_support"))

    @property
    def hierarchical_symbols(self) -> bool:
        return bool(self._capability("text_document", "document_symbol", "hierarchical_document_symbol_support"))

    # -- analysis
    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def analysis(self, doc: Document):
        """The analysis of the document's current text: reused, awaited if running, or started."""
        from . import features

        if doc.pending is None or doc.pending_revision != doc.revision:
            path, base = doc.location()
            text, revision = doc.text, doc.revision

            def job():
                if doc.revision != revision:  # replaced while queued: whoever waits checks the revision anyway
                    return features.Analysis(text, revision, None, crash="skipped: the text changed")
                return features.analyse(text, path, base, revision)

            doc.pending = asyncio.ensure_future(self.run(job))
            doc.pending_revision = revision
            doc.pending.add_done_callback(lambda f: self._finished(doc, f))
        return await asyncio.shield(doc.pending)

    @staticmethod
    def _finished(doc: Document, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        an = future.result()
        if an.result is not None and (doc.last is None or an.revision > doc.last.revision):
            doc.last = an

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dfm language server task failed", exc_info=task.exception())

    def schedule(self, doc: Document, delay: float = DEBOUNCE_S) -> None:
        if doc.timer is not None:
            doc.timer.cancel()
        if delay <= 0:
            doc.timer = None
            self.spawn(self.publish(doc))
            return
        doc.timer = asyncio.get_running_loop().call_later(delay, lambda: self.spawn(self.publish(doc)))

    async def publish(self, doc: Document) -> None:
        from . import features

        doc.timer = None
        an = await self.analysis(doc)
        if doc.closed or an.revision != doc.revision:
            return  # a newer text is on its way; its own timer publishes
        items = features.diagnostics(an, doc.index(self.encoding), doc.uri)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(doc.uri, items, version=doc.version))

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)


# ---- handlers ------------------------------------------------------------------------------------


def initialized(ls: DfmLanguageServer, params: lsp.InitializedParams) -> None:
    def warm_up() -> None:
        from . import features

        features.warm_up()

    ls.executor.submit(warm_up)


def shutdown(ls: DfmLanguageServer, params: None) -> None:
    for doc in ls.documents.values():
        if doc.timer is not None:
            doc.timer.cancel()
    ls.executor.shutdown(wait=False, cancel_futures=True)


def did_open(ls: DfmLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    doc = Document(item.uri, item.text, item.version)
    old = ls.documents.get(item.uri)
    if old is not None:
        old.closed = True
        doc.revision = old.revision + 1
    ls.documents[item.uri] = doc
    ls.schedule(doc, delay=0)


def did_change(ls: DfmLanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
    doc = ls.document(params.text_document.uri)
    if doc is None:
        return
    text = doc.text
    for change in params.content_changes:
        if isinstance(change, lsp.TextDocumentContentChangePartial):
            index = doc.index(ls.encoding) if text is doc.text else LineIndex(text, ls.encoding)
            start, end = index.offset(change.range.start), index.offset(change.range.end)
            text = text[:start] + change.text + text[max(start, end):]
        else:
            text = change.text
    doc.text = text
    doc.version = params.text_document.version
    doc.revision += 1
    ls.schedule(doc)


def did_save(ls: DfmLanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
    doc = ls.document(params.text_document.uri)
    if doc is not None:  # files the scene names may have appeared since
        doc.revision += 1
        ls.schedule(doc, delay=0)


def did_close(ls: DfmLanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
    doc = ls.documents.pop(params.text_document.uri, None)
    if doc is None:
        return
    doc.closed = True
    if doc.timer is not None:
        doc.timer.cancel()
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(doc.uri, []))


def completion(ls: DfmLanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList | None:
    from .completion import completion as items_at

    doc = ls.document(params.text_document.uri)
    if doc is None:
        return None
    latest = doc.last  # for fps, bpm…: completion never waits for a check
    trigger = params.context.trigger_character if params.context else None
    items = items_at(latest, doc.text, doc.index(ls.encoding), params.position,
                                snippets=ls.snippets, trigger=trigger, insert_replace=ls.insert_replace)
    return lsp.CompletionList(is_incomplete=False, items=items)


async def _analysed(ls: DfmLanguageServer, uri: str):
    """(document, its analysis) of its current text, waited for at most FEATURE_BUDGET_S: after that, the last
    finished analysis if it was of this same text, else None (the editor keeps what it shows and asks again).
    A long check never holds up the outline, the inlay hints or the quick fixes."""
    doc = ls.document(uri)
    if doc is None:
        return None
    current = asyncio.ensure_future(ls.analysis(doc))
    done, _ = await asyncio.wait({current}, timeout=FEATURE_BUDGET_S)
    if not done:
        last = doc.last
        return (doc, last) if last is not None and last.text == doc.text else None
    an = current.result()
    return (doc, an) if an.revision == doc.revision else None


def _unchanged_offset(old: str, new: str, offset: int) -> int | None:
    """Where `offset` in `new` is in `old`, when the text around it (to a line's end either way) is the same
    in both: before the first or after the last character an edit changed. None otherwise."""
    end = new.find("\n", offset) + 1  # through the line break, so that a longer old line counts as a change
    if new[:end or len(new)] == old[:end or len(old)]:  # (no break: the last line, so all of the text)
        return offset
    start = new.rfind("\n", 0, offset) + 1
    old_start = start + len(old) - len(new)
    at_line_start = old_start == 0 or (old_start > 0 and old[old_start - 1] == "\n")  # as `start` is in new
    if at_line_start and new[start:] == old[old_start:]:
        return old_start + offset - start
    return None


async def hover(ls: DfmLanguageServer, params: lsp.HoverParams) -> lsp.Hover | None:
    from .hover import hover as hover_at

    doc = ls.document(params.text_document.uri)
    if doc is None:
        return None
    index = doc.index(ls.encoding)
    offset = index.offset(params.position)
    last = doc.last
    old = None if last is None else _unchanged_offset(last.text, doc.text, offset)
    current = asyncio.ensure_future(ls.analysis(doc))
    if old is not None:  # the last analysis still covers this spot: wait for a newer one a little only
        done, _ = await asyncio.wait({current}, timeout=HOVER_BUDGET_S)
        if not done:
            if old == offset:
                return hover_at(last, index, offset)
            old_index = LineIndex(last.text, ls.encoding)  # answered in the old text's positions, then moved
            h = hover_at(last, old_index, old)
            return None if h is None else _shifted(h, old_index, index, offset - old)
    an = await current
    if an.revision != doc.revision or doc.closed:
        return None
    return hover_at(an, index, offset)


def _shifted(h: lsp.Hover, old: LineIndex, new: LineIndex, delta: int) -> lsp.Hover:
    if h.range is not None:
        start, end = old.offset(h.range.start) + delta, old.offset(h.range.end) + delta
        h.range = lsp.Range(new.position(start), new.position(end))
    return h


async def inlay_hint(ls: DfmLanguageServer, params: lsp.InlayHintParams) -> list[lsp.InlayHint] | None:
    from .outline import inlay_hints

    found = await _analysed(ls, params.text_document.uri)
    if found is None:
        return None
    doc, an = found
    index = doc.index(ls.encoding)
    return inlay_hints(an, index, index.offset(params.range.start), index.offset(params.range.end))


async def document_symbol(ls: DfmLanguageServer, params: lsp.DocumentSymbolParams):
    from .outline import document_symbols, flat_symbols

    found = await _analysed(ls, params.text_document.uri)
    if found is None:
        return None
    doc, an = found
    symbols = document_symbols(an, doc.index(ls.encoding))
    return symbols if ls.hierarchical_symbols else flat_symbols(symbols, doc.uri)


async def code_action(ls: DfmLanguageServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction] | None:
    from . import features

    found = await _analysed(ls, params.text_document.uri)
    if found is None:
        return None
    doc, an = found
    only = [str(getattr(k, "value", k)) for k in params.context.only] if params.context.only else None
    return features.code_actions(an, doc.index(ls.encoding), doc.uri, params.range, only)


async def formatting(ls: DfmLanguageServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    from . import features

    doc = ls.document(params.text_document.uri)
    if doc is None:
        return None
    text, index = doc.text, doc.index(ls.encoding)
    edits = await ls.run(features.formatting, text, index, doc.location()[0])
    if doc.text is not text:
        return None
    if edits is None:  # logged, not a pop-up: format-on-save would raise one at every save
        ls.window_log_message(lsp.LogMessageParams(lsp.MessageType.Info,
                                                   "dfm: not formatted: the scene has syntax errors"))
    return edits


def create_server() -> DfmLanguageServer:
    ls = DfmLanguageServer()
    ls.feature(lsp.INITIALIZED)(initialized)
    ls.feature(lsp.SHUTDOWN)(shutdown)
    ls.feature(lsp.TEXT_DOCUMENT_DID_OPEN)(did_open)
    ls.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(lsp.TEXT_DOCUMENT_DID_SAVE)(did_save)
    ls.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=[" ", "("]))(completion)
    ls.feature(lsp.TEXT_DOCUMENT_HOVER)(hover)
    ls.feature(lsp.TEXT_DOCUMENT_INLAY_HINT, lsp.InlayHintOptions(resolve_provider=False))(inlay_hint)
    ls.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)(document_symbol)
    ls.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(
        code_action_kinds=[lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.SourceFixAll]))(code_action)
    ls.feature(lsp.TEXT_DOCUMENT_FORMATTING)(formatting)
    return ls


def serve(log_file: str | None = None) -> int:
    """Run the server on stdin/stdout until the client says `exit`."""
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() anywhere must not corrupt the protocol stream
    # pygls frames stdin itself and trusts every Content-Length; FramedReader checks them first (framing.py)
    create_server().start_io(FramedReader(stdin), stdout)
    return 0
