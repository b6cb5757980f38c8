"""A persistent compilation cache, on by default: compile once per configuration.

JAX can save every compiled program to a directory and load it in a later
process instead of compiling again (its persistent compilation cache). xlex
turns that on when imported, in the user's cache directory
(``$XDG_CACHE_HOME/xlex/jax``, else ``~/.cache/xlex/jax``), so a second
``xlex run`` or notebook running the same configuration (grid, physics,
time step, precision, device) skips compilation.

The environment variable ``XLEX_COMPILATION_CACHE`` decides, when xlex is
imported:

- unset, empty, ``1``, ``on``, ``true`` or ``yes``: the default directory;
- ``0``, ``off``, ``false`` or ``no``: no cache;
- anything else: the path of the directory to use.

In a running session :func:`enable` and :func:`disable` do the same.

**The directory must be the user's own.** JAX loads and runs what it finds
there, so anyone who can write to it can make your process run their code.
xlex creates the directory with mode 0o700 and refuses (with a warning, the
cache left off) a directory that another user owns or that others may write
to. A cache that the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR``
or ``jax.config.update("jax_compilation_cache_dir", ...)`` before importing
xlex) is left as it is.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import jax

ENVIRONMENT_VARIABLE = "XLEX_COMPILATION_CACHE"
OFF = frozenset({"0", "off", "false", "no"})
DEFAULT = frozenset({"", "1", "on", "true", "yes"})


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/xlex/jax``, else ``~/.cache/xlex/jax``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG specification says a relative XDG_CACHE_HOME is to be ignored
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xlex" / "jax"


def directory() -> Path | None:
    """The directory JAX's persistent cache uses now, or None when it is off."""
    path = jax.config.jax_compilation_cache_dir
    if not path or not jax.config.jax_enable_compilation_cache:
        return None
    return Path(path)


def enable(path=None, *, min_compile_seconds: float | None = None) -> Path | None:
    """Turn the persistent compilation cache on in ``path`` (default
    :func:`default_directory`), creating it with mode 0o700.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The cache directory; it must belong to the user and not be writable
        by others.
    min_compile_seconds : float, optional
        Cache only programs that took at least this long to compile [s];
        default JAX's own setting (1 s), which keeps the many tiny programs
        of eager array operations out of the cache.

    Returns
    -------
    pathlib.Path or None
        The directory in use, or None when it was refused: then a
        ``UserWarning`` says why and how to fix it, and the cache is off.
    """
    if min_compile_seconds is not None:
        seconds = float(min_compile_seconds)
        if not seconds >= 0:
            from xlex.core.errors import OptionError
            raise OptionError(f"min_compile_seconds must be >= 0 s, got {min_compile_seconds!r}")
        jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    try:
        target = default_directory() if path is None else Path(path).expanduser()
        problem = _prepare(target)
    except (OSError, RuntimeError) as err:  # RuntimeError: Path.home() without a home
        target, problem = path, f"it cannot be created or read ({err})"
    if problem:
        warnings.warn(f"xlex compilation cache left off: the directory {str(target)!r} is not "
                      f"safe to use: {problem}. Set {ENVIRONMENT_VARIABLE} to a directory of "
                      f"your own (or to 0 to turn the cache off and silence this warning).",
                      UserWarning, stacklevel=2)
        disable()
        return None
    _use(str(target))
    return target


def disable() -> None:
    """Turn the persistent compilation cache off for the rest of the session."""
    _use(None)


def enable_from_environment() -> Path | None:
    """What ``import xlex`` does: follow ``XLEX_COMPILATION_CACHE`` (see the
    module's docstring); leave a cache the user set up for JAX alone.

    Cheap (a stat and at most one mkdir) and sets no environment variable."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value is None and jax.config.jax_compilation_cache_dir:
        return directory()  # the user's own JAX cache
    value = (value or "").strip()
    if value.lower() in OFF:
        return directory()  # None, unless the user set up a cache for JAX itself
    return enable(None if value.lower() in DEFAULT else value)


def _prepare(path: Path) -> str | None:
    """Create ``path`` (mode 0o700) if missing; the reason it is unsafe, or None."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile: check it below
            pass
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"it belongs to another user (uid {info.st_uid}, you are {os.getuid()})"
    if hasattr(os, "getuid") and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"others may write to it (mode {stat.S_IMODE(info.st_mode):o}; "
                f"'chmod 700 {path}' makes it yours alone)")
    return None


def _use(path: str | None) -> None:
    """Point JAX's cache at ``path`` (None: off) and drop the cache JAX may
    already have opened, so the change holds for the next compilation."""
    jax.config.update("jax_compilation_cache_dir", path)
    from jax.experimental.compilation_cache import compilation_cache
    compilation_cache.reset_cache()


__all__ = ["ENVIRONMENT_VARIABLE", "default_directory", "directory", "disable", "enable",
           "enable_from_environment"]
