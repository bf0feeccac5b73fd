"""What a user sees while a command runs: assay's own lines only.

Libraries print progress bars (tqdm in transformers' GGUF conversion, "Loading weights",
"Writing model shards", huggingface_hub downloads), log records and Python warnings. While a
command runs inside :func:`captured`, anything written to ``sys.stderr`` by those libraries is
kept in a buffer instead of reaching the terminal; assay's own lines go to the real stderr:

- ``[stage] message``: one progress line per stage, on a terminal updated in place, elsewhere repeated
  with the latest message every ``PROGRESS_EVERY`` seconds (none with ``--quiet``);
- ``warning: message``: an assay warning (a ``warnings.warn`` from assay code or a record of
  the ``assay`` logger), once each (none with ``--quiet``: they are kept in the artifact's notes);
- ``error: ...``: printed by the command group after the block ends.

When the command fails with something other than an AssayError, the captured library output is
replayed so that nothing needed to debug it is lost.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

_KEEP = 200_000  # characters of library output kept for a crash
PROGRESS_EVERY = 5.0  # seconds: the longest a stage's progress goes unprinted when stderr is not a terminal


class _Sink(io.TextIOBase):
    """A stderr stand-in that keeps the tail of what libraries write."""

    def __init__(self, real: TextIO | None = None) -> None:
        self.parts: list[str] = []
        self.size = 0
        self._real = real

    def fileno(self) -> int:  # for libraries that need a descriptor (their C-level output is not captured)
        if self._real is None:
            raise io.UnsupportedOperation("fileno")
        return self._real.fileno()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:  # type: ignore[override]
        self.parts.append(text)
        self.size += len(text)
        while self.size > _KEEP and len(self.parts) > 1:
            self.size -= len(self.parts.pop(0))
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


class Output:
    """Where assay's own lines go while library output is captured."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.warned: list[str] = []
        self._open_line = False

    def line(self, text: str) -> None:
        self._close()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _close(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def warning(self, message: str) -> None:
        message = " ".join(str(message).split())
        if message in self.warned:
            return
        self.warned.append(message)
        if not self.quiet:
            self.line(f"warning: {message}")

    def status_printer(self, every: float | None = None) -> Callable[[str, "float | None", str], None]:
        """An ``on_status(stage, fraction, message)`` callback: one line per stage.

        Within a stage later messages replace the line on a terminal; elsewhere (a log, CI) the
        stage's first message, then the latest one at most every ``every`` seconds (default
        ``PROGRESS_EVERY``: training's step / loss / ETA keeps showing), and its final one (fraction 1).
        """
        every = PROGRESS_EVERY if every is None else every
        state: dict[str, Any] = {"stage": None, "printed": 0.0}

        def show(stage: str, fraction: float | None, message: str) -> None:
            if self.quiet:
                return
            text = f"[{stage}] {message}"
            now = time.monotonic()
            if stage != state["stage"]:
                state["stage"], state["printed"] = stage, now
                if self.tty and fraction is not None and fraction < 1:
                    self._close()
                    self.stream.write(text)
                    self.stream.flush()
                    self._open_line = True
                else:
                    self.line(text)
                return
            if self.tty:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self._open_line = True
                if fraction is not None and fraction >= 1:
                    self._close()
            elif (fraction is not None and fraction >= 1) or now - state["printed"] >= every:
                state["printed"] = now
                self.line(text)

        return show

    def finish(self) -> None:
        self._close()


_current: list[Output] = []


def current() -> Output | None:
    """The Output of the command running now (None outside :func:`captured`)."""
    return _current[-1] if _current else None


def _is_assay_source(filename: str) -> bool:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../assay
    return os.path.abspath(filename).startswith(here + os.sep)


class _AssayLogHandler(logging.Handler):
    def __init__(self, out: Output):
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.warning(record.getMessage())
        except Exception:  # pragma: no cover - never let output break a run
            pass


def _quiet_libraries() -> list[Callable[[], None]]:
    """Turn off the progress bars and info logs of transformers / huggingface_hub when loaded."""
    undo: list[Callable[[], None]] = []
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY",
                                                "TRANSFORMERS_NO_ADVISORY_WARNINGS")}
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error",
                      TRANSFORMERS_NO_ADVISORY_WARNINGS="1")

    def restore_env() -> None:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    undo.append(restore_env)
    for name in ("transformers", "huggingface_hub", "peft", "accelerate", "datasets", "torch", "urllib3",
                 "httpx", "filelock", "gguf"):
        lg = logging.getLogger(name)
        old = lg.level
        lg.setLevel(logging.ERROR)
        undo.append(lambda lg=lg, old=old: lg.setLevel(old))
    return undo


@contextmanager
def captured(quiet: bool = False) -> Iterator[Output]:
    """Run a command with library output captured; yields the Output for assay's own lines."""
    real = sys.stderr
    out = Output(real, quiet)
    sink = _Sink(real)
    handler = _AssayLogHandler(out)
    assay_log = logging.getLogger("assay")
    old_propagate = assay_log.propagate
    undo = _quiet_libraries()
    _current.append(out)
    ok = False
    with warnings.catch_warnings():
        warnings.simplefilter("default")

        def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            if _is_assay_source(filename) and not issubclass(category, DeprecationWarning):
                out.warning(str(message))
            else:
                sink.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = showwarning
        assay_log.addHandler(handler)
        assay_log.propagate = False
        sys.stderr = sink  # type: ignore[assignment]
        try:
            yield out
            ok = True
        except BaseException as exc:
            from ..errors import AssayError

            import click

            ok = isinstance(exc, (AssayError, UnicodeDecodeError, SystemExit, KeyboardInterrupt,
                                  click.ClickException, click.exceptions.Exit))
            raise
        finally:
            sys.stderr = real
            assay_log.removeHandler(handler)
            assay_log.propagate = old_propagate
            for fn in reversed(undo):
                fn()
            _current.pop()
            out.finish()
            if not ok and sink.text().strip():
                real.write(sink.text().rstrip() + "\n")
