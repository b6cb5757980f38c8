"""Ctrl-C in the ``xlex`` command: one line, exit status 130, the store marked.

Python's own Ctrl-C (a KeyboardInterrupt raised wherever the main thread
happens to be) misbehaves in three ways in a JAX program: raised inside a
garbage-collector callback during ``import jax`` it is printed and swallowed
(the run goes on); raised in the middle of tracing or compiling it unwinds
through JAX and the process can crash at exit (exit 139); and raised in the
middle of a record's write it leaves the message and the file disagreeing.

So the command installs :func:`install`'s handler, which stops the process
itself: it finishes whatever store write is under way (:func:`critical`),
lets the innermost :func:`saving` block say (and do) what is kept, prints
``xlex <command>: interrupted; ...`` on stderr and leaves with
``os._exit(130)``, without unwinding Python through JAX. Library code
(``ds.lex.integrate`` in a notebook) keeps Python's KeyboardInterrupt: the
handler is only installed by the command, and :func:`critical` and
:func:`saving` do nothing else without it.

This module imports only the standard library, so that ``xlex/__init__.py`` can
install the handler before the heavy imports (:func:`install_for_command`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

#: Exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_STATUS = 130

_COMMANDS = ("run", "compare", "bench", "train", "datasets")


class _State:
    def __init__(self):
        self.command = None       # "run", ...; None before the arguments are parsed
        self.installed = False
        self.critical = 0         # depth of store writes under way
        self.pending = False      # a Ctrl-C came during a store write
        self.savers = []          # describe() callables, innermost last
        self.line_open = False    # a progress bar is drawn on the current line


_state = _State()


def install(command=None):
    """Handle SIGINT in this process as the ``xlex`` command does; returns the
    handler it replaced (give it to :func:`uninstall`). Only from the main thread."""
    if command is not None:
        _state.command = command
    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers can only be set there; Python's default stays
    previous = signal.signal(signal.SIGINT, _on_sigint)
    _state.installed = True
    return previous


def uninstall(previous):
    """Put back the handler :func:`install` replaced (``cli.main`` called in-process,
    e.g. by tests, must not leave its handler behind)."""
    if previous is None or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, previous)
    _state.installed = previous is _on_sigint


def install_for_command():
    """Install the handler if this process is the ``xlex`` console script. Call it
    first in ``xlex/__init__.py``: importing JAX takes seconds, and a Ctrl-C then
    must not print a traceback or be swallowed."""
    argv = sys.argv or [""]
    if Path(argv[0]).name.split(".")[0] not in ("xlex", "xlex-script"):
        return
    command = argv[1] if len(argv) > 1 and argv[1] in _COMMANDS else None
    install(command)


@contextlib.contextmanager
def critical():
    """A store write: a Ctrl-C during the block takes effect when it ends, so
    the file is never left half written by it."""
    _state.critical += 1
    try:
        yield
    finally:
        _state.critical -= 1
        if not _state.critical and _state.pending:
            _stop()


def push_saver(describe):
    """From now until :func:`pop_saver`, a Ctrl-C calls ``describe()``, which
    finishes what must be finished (e.g. marks the store ``interrupted``) and
    returns what was kept, e.g. ``"run.nc holds 3 complete records ..."``."""
    _state.savers.append(describe)


def pop_saver(describe):
    if describe in _state.savers:
        _state.savers.remove(describe)


@contextlib.contextmanager
def saving(describe):
    """:func:`push_saver` for the duration of a block."""
    push_saver(describe)
    try:
        yield
    finally:
        pop_saver(describe)


def set_line_open(is_open: bool):
    """Say whether a progress bar is drawn on stderr's current line (the message
    then starts on a new one)."""
    _state.line_open = bool(is_open)


def _on_sigint(signum, frame):
    if _state.critical:
        _state.pending = True
        return
    _stop()


def _stop():
    # a second Ctrl-C while the store is being marked must not cut that short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    describe = _state.savers[-1] if _state.savers else None
    try:
        kept = describe() if describe else "nothing was written"
    except Exception as err:  # the message must still come out, and the exit
        kept = f"what was saved could not be checked ({type(err).__name__}: {err})"
    command = f"xlex {_state.command}" if _state.command else "xlex"
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.write(("\n" if _state.line_open else "") + f"{command}: interrupted; {kept}\n")
        sys.stderr.flush()
    # not sys.exit: unwinding Python through a JAX trace or compilation can crash
    # the process at exit; the store is closed and the output flushed by now
    os._exit(EXIT_STATUS)


__all__ = ["EXIT_STATUS", "install", "uninstall", "install_for_command", "critical",
           "saving", "push_saver", "pop_saver", "set_line_open"]
