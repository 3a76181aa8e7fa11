"""Where the demo (`app.py`) keeps uploaded files, and for how long.

- Every analysis works on its own copy of the uploads, in a fresh folder made when the request arrives and deleted
  when it ends (`DemoStorage.request_copies`): two requests for the same file (Gradio stores an upload under the hash
  of its content, so equal uploads share one path) never delete each other's input.
- Everything in Gradio's upload folder older than `max_age_s` is deleted every `every_s` seconds (`sweep`), so an
  upload that never reaches an analysis is gone within `max_age_s + every_s`; `DemoStorage.close` deletes the rest.
- One analysis runs at a time, first come first served, with a bounded number waiting (`AnalysisGate`).
- `UploadNameGuard` refuses an upload whose file name the upload route would refuse only after storing it, before a
  byte of it is written (Gradio's `/upload` answers HTTP 400 for a file named `..` but leaves its copy on disk);
  `gradio_cannot_store` is the name rule it applies.
- `private_gradio_folder` gives one server its own GRADIO_TEMP_DIR and deletes it afterwards.

Gradio is imported only inside `gradio_cannot_store` (the guard is plain ASGI, fed by python-multipart, a Gradio
dependency); not a Hub file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_PREFIX = "request-"
UPLOAD_ROUTE_SUFFIX = "/upload"
MULTIPART_TYPE = b"multipart/form-data"
BAD_REQUEST = 400


class UploadGoneError(FileNotFoundError):
    """An upload named by a request is no longer on the server (swept, or deleted with an earlier analysis)."""


class GateFullError(RuntimeError):
    """Too many analyses are already waiting."""


def sweep(folder: Path, max_age_s: float, now: float | None = None) -> int:
    """Delete files under `folder` last modified more than `max_age_s` ago, then empty sub-folders of that age.

    Returns the number of files deleted. `folder` itself is kept; a missing folder is no error.
    """
    now = time.time() if now is None else now
    deleted = 0
    entries = sorted(folder.rglob("*"), key=lambda path: len(path.parts), reverse=True) if folder.is_dir() else []
    for path in entries:  # deepest first, so a folder is looked at after its files
        with contextlib.suppress(FileNotFoundError):
            if now - path.lstat().st_mtime <= max_age_s:
                continue
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty
            else:
                path.unlink()
                deleted += 1
    return deleted


def empty_folder(folder: Path) -> None:
    """Delete everything inside `folder` (kept itself); a missing folder is no error."""
    for path in list(folder.iterdir()) if folder.is_dir() else []:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@dataclass
class DemoStorage:
    """Gradio's upload folder (swept) and the per-request working folders of one demo server."""

    uploads: Path  # Gradio's upload/cache folder (GRADIO_TEMP_DIR)
    requests: Path  # per-request copies of the uploads
    max_age_s: float
    every_s: float
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _sweeper: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        """Sweep the upload folder every `every_s` seconds in a background thread until `close`."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep_forever, name="usvcl-upload-sweep", daemon=True)
            self._sweeper.start()

    def _sweep_forever(self) -> None:
        while not self._stop.wait(self.every_s):
            sweep(self.uploads, self.max_age_s)

    def close(self) -> None:
        """Stop sweeping and delete every upload and working copy."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join()
        empty_folder(self.uploads)
        empty_folder(self.requests)

    @contextlib.contextmanager
    def request_copies(self, paths: list[str]) -> Iterator[list[str]]:
        """Copies of `paths` in a fresh folder (hard links where the file system allows), deleted on exit.

        Raises `UploadGoneError` naming the first upload that is no longer there.
        """
        self.requests.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=REQUEST_PREFIX, dir=self.requests))
        try:
            yield [str(_copy_into(Path(path), folder / str(position))) for position, path in enumerate(paths)]
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _copy_into(path: Path, folder: Path) -> Path:
    """`path` linked (or copied) into `folder` under its own name; `UploadGoneError` when it is gone."""
    folder.mkdir()
    target = folder / path.name
    try:
        try:
            os.link(path, target)
        except OSError:
            if not path.is_file():
                raise
            shutil.copyfile(path, target)
    except FileNotFoundError as error:
        raise UploadGoneError(str(path)) from error
    return target


class AnalysisGate:
    """One analysis at a time in arrival order; at most `max_waiting` wait, later ones get `GateFullError`."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    @contextlib.contextmanager
    def turn(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 1.0) -> Iterator[float]:
        """Wait for this request's turn (calling `on_wait(analyses ahead)` while waiting); yields seconds waited."""
        started = time.perf_counter()
        with self._condition:
            if self._next_ticket - self._serving > self.max_waiting:
                raise GateFullError(f"{self._next_ticket - self._serving} analyses are running or waiting")
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket:
                if on_wait is not None:
                    on_wait(ticket - self._serving)
                self._condition.wait(poll_s)
        try:
            yield time.perf_counter() - started
        finally:
            with self._condition:
                self._serving += 1
                self._condition.notify_all()


class RefusedUploadError(Exception):
    """Raised inside the request stream to stop an upload; `UploadNameGuard` gives it to the app's parser."""


class _FileNameWatcher:
    """Follows a multipart body as it streams in; `refused` is the first part file name `refuses` rejects."""

    def __init__(self, boundary: bytes, refuses: Callable[[str], bool]) -> None:
        from python_multipart.multipart import MultipartParser

        self.refuses = refuses
        self.refused: str | None = None
        self.broken = False
        self._name, self._value, self._disposition = bytearray(), bytearray(), b""
        self._parser = MultipartParser(boundary, {
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        })

    def _header_end(self) -> None:
        if bytes(self._name).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._name, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        self._disposition = b""
        name = options.get(b"filename")
        if name is not None and self.refused is None and self.refuses(name.decode("utf-8", "replace")):
            self.refused = name.decode("utf-8", "replace")

    def feed(self, chunk: bytes) -> str | None:
        """Parse the next body chunk; the refused file name so far, if any (a malformed body stops watching)."""
        from python_multipart.exceptions import MultipartParseError

        if not self.broken:
            try:
                self._parser.write(chunk)
            except MultipartParseError:
                self.broken = True  # the app's own parser reports it
        return self.refused


class UploadNameGuard:
    """ASGI middleware: an upload (POST .../upload) naming a file `refuses` rejects is stopped before it is stored.

    The body is watched as it streams to the app; the chunk that completes the refused part's headers is never
    handed on. Instead `receive` raises `error_type(message)` inside the app's body parser: pass the parser's own
    error type (Gradio's: starlette's `MultiPartException`) so that the app deletes the files of the request's
    earlier parts and answers HTTP 400 itself; any other exception is answered with 400 here.
    """

    def __init__(self, app, refuses: Callable[[str], bool], error_type: type[Exception] = RefusedUploadError) -> None:
        self.app, self.refuses, self.error_type = app, refuses, error_type

    async def __call__(self, scope, receive, send) -> None:
        boundary = _upload_boundary(scope)
        if boundary is None:
            await self.app(scope, receive, send)
            return
        watcher = _FileNameWatcher(boundary, self.refuses)

        async def guarded_receive():
            message = await receive()
            if message["type"] == "http.request" and watcher.feed(message.get("body", b"")) is not None:
                raise self.error_type(f"Invalid file name: {watcher.refused}")
            return message

        try:
            await self.app(scope, guarded_receive, send)
        except RefusedUploadError as error:
            await _plain_response(send, BAD_REQUEST, str(error))


def _upload_boundary(scope) -> bytes | None:
    """The multipart boundary of an HTTP POST to an upload route, else None."""
    if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(UPLOAD_ROUTE_SUFFIX):
        return None
    from python_multipart.multipart import parse_options_header

    content_type = dict(scope["headers"]).get(b"content-type", b"")
    kind, options = parse_options_header(content_type)
    return options.get(b"boundary") if kind == MULTIPART_TYPE else None


async def _plain_response(send, status: int, text: str) -> None:
    """Send a text/plain response."""
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def gradio_cannot_store(filename: str) -> bool:
    """True for an upload name Gradio's /upload route refuses only after storing the file (`..`).

    The same steps as `gradio.route_utils.upload_fn`: base name, invalid characters stripped, `safe_join`.
    """
    from gradio.exceptions import InvalidPathError
    from gradio.utils import safe_join
    from gradio_client.utils import strip_invalid_filename_characters

    name = strip_invalid_filename_characters(Path(filename).name) if Path(filename).name else ""
    try:
        safe_join("upload", name or "tmp")
    except InvalidPathError:
        return True
    return False


@contextlib.contextmanager
def private_gradio_folder():
    """Point GRADIO_TEMP_DIR at a fresh folder (inside the one it named, if any) for this server; delete it after."""
    parent = os.environ.get("GRADIO_TEMP_DIR")
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="usvcl-demo-", dir=parent))
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if parent:
            os.environ["GRADIO_TEMP_DIR"] = parent
        else:
            os.environ.pop("GRADIO_TEMP_DIR", None)
