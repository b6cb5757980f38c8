"""The persistent compilation cache: a second process with the same configuration
loads its compiled programs instead of compiling; the environment variable and
the functions turn it off; a directory that is not the user's own is refused.

Every cache here lives under tmp_path: the tests never write to the real one."""

import json
import os
import stat
import subprocess
import sys
import warnings

import jax
import pytest

from xlex import compilation_cache

# A small configuration run in a fresh process; it counts JAX's cache events.
# The threshold 0 caches every program, so the count does not depend on how
# fast this machine compiles.
PROBE = """
import json, jax
jax.config.update("jax_enable_x64", True)
events = {"requests": 0, "hits": 0}
def count(event, **_):
    if event == "/jax/compilation_cache/compile_requests_use_cache":
        events["requests"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
        events["hits"] += 1
jax.monitoring.register_event_listener(count)
import xlex
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
ds = xlex.cases.warm_bubble(theta_c=3.0, dx=3000.0, dz=2000.0)
ds.lex.integrate(24.0, dt=12.0, output_every=12.0, progress=False)
print(json.dumps({"directory": str(xlex.compilation_cache.directory()), **events}))
"""


def probe(env_value, **more):
    env = {**os.environ, compilation_cache.ENVIRONMENT_VARIABLE: str(env_value), **more}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def entries(path):
    return sorted(p.name for p in path.rglob("*") if p.is_file())


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "cache"
    first = probe(cache)
    assert first["directory"] == str(cache)
    assert first["requests"] > 0 and first["hits"] == 0
    written = entries(cache)
    assert written, "the first process wrote nothing to the cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700

    second = probe(cache)
    # every program the second process needed was loaded, none compiled again
    assert second["hits"] == second["requests"] == first["requests"]
    assert entries(cache) == written


def test_zero_turns_it_off(tmp_path):
    home = tmp_path / "home"
    out = probe("0", HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    assert out["directory"] == "None"
    assert out["hits"] == 0
    assert not home.exists()


@pytest.fixture
def restore():
    """Give the test process back the cache it had."""
    saved = jax.config.jax_compilation_cache_dir
    yield
    if saved:
        compilation_cache.enable(saved)
    else:
        compilation_cache.disable()


def test_default_directory_follows_xdg_and_is_private(tmp_path, monkeypatch, restore):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(compilation_cache.ENVIRONMENT_VARIABLE, raising=False)
    jax.config.update("jax_compilation_cache_dir", None)  # no cache set up for JAX itself
    path = compilation_cache.enable_from_environment()
    assert path == tmp_path / "xlex" / "jax" == compilation_cache.directory()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    compilation_cache.disable()
    assert compilation_cache.directory() is None


def test_a_cache_set_up_for_jax_is_left_alone(tmp_path, monkeypatch, restore):
    monkeypatch.delenv(compilation_cache.ENVIRONMENT_VARIABLE, raising=False)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    assert compilation_cache.enable_from_environment() == tmp_path
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)


def test_a_directory_others_may_write_to_is_refused(tmp_path, restore):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.warns(UserWarning, match=r"left off.*others may write.*chmod 700.*"
                                         "XLEX_COMPILATION_CACHE"):
        assert compilation_cache.enable(shared) is None
    assert compilation_cache.directory() is None


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners here")
def test_a_directory_of_another_user_is_refused(tmp_path, restore):
    if os.getuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 12345, 12345)
    else:
        theirs = "/usr"  # root's
    with pytest.warns(UserWarning, match="belongs to another user"):
        assert compilation_cache.enable(theirs) is None
    assert compilation_cache.directory() is None


def test_a_file_is_refused(tmp_path, restore):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.warns(UserWarning, match="not a directory"):
        assert compilation_cache.enable(path) is None


def test_min_compile_seconds_is_checked(tmp_path, restore):
    from xlex.core.errors import OptionError
    with pytest.raises(OptionError, match="min_compile_seconds"):
        compilation_cache.enable(min_compile_seconds=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        saved = jax.config.jax_persistent_cache_min_compile_time_secs
        try:
            assert compilation_cache.enable(tmp_path / "c", min_compile_seconds=2.0)
            assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.0
        finally:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", saved)
