"""Sphinx configuration of the xlex documentation.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST); the API reference is generated from the numpy-style
docstrings with autodoc + napoleon; the notebook is rendered from its stored
outputs (myst-nb, never executed here).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the checkout the docs live in, installed or not.
sys.path.insert(0, str(ROOT))

import xlex  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "xlex"
author = "the xlex developers"
copyright = "the xlex developers"
release = xlex.__version__
version = release

# -- General -----------------------------------------------------------------

extensions = [
    "myst_nb",  # Markdown pages (it includes myst_parser) and the notebook
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
root_doc = "index"
# ``python`` in fenced code blocks; "text" output blocks stay plain.
highlight_language = "python"

# -- MyST and myst-nb ----------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
# Anchors for "page.md#section" links.
myst_heading_anchors = 3
# The notebook is shipped with its outputs; never run it while building the docs.
nb_execution_mode = "off"

# -- autodoc and napoleon ----------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False

# -- HTML ----------------------------------------------------------------------


def _theme() -> str:
    try:
        import sphinx_book_theme  # noqa: F401
    except ImportError:  # the default theme, shipped with Sphinx
        return "alabaster"
    return "sphinx_book_theme"


html_theme = _theme()
html_title = f"xlex {release}"
if html_theme == "sphinx_book_theme":
    html_theme_options = {
        "show_toc_level": 2,
        "navigation_with_keys": False,
    }

# -- Optional pages --------------------------------------------------------------

#: The index toctree holds this placeholder line where ``performance`` goes: the
#: page is listed when ``docs/performance.md`` exists and left out otherwise (a
#: toctree entry or glob that names a missing page is a warning, hence an error).
PERFORMANCE_PLACEHOLDER = "performance-if-present"


def _optional_pages(app, docname, source):
    if docname != root_doc:
        return
    entry = "performance" if (DOCS / "performance.md").exists() else ""
    source[0] = source[0].replace(PERFORMANCE_PLACEHOLDER, entry)


# -- The command-line help, generated ------------------------------------------


class XlexHelp(SphinxDirective):
    """``xlex-help [SUBCOMMAND]``: the ``--help`` text of the ``xlex`` command,
    produced by running its argument parser, so the page cannot go stale."""

    optional_arguments = 1

    def run(self):
        from xlex import cli

        argv = [*self.arguments, "--help"]
        buffer = io.StringIO()
        columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"
        try:
            with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
                cli.main(argv)
        finally:
            if columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = columns
        self.env.note_dependency(cli.__file__)
        text = buffer.getvalue().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.connect("source-read", _optional_pages)
    app.add_directive("xlex-help", XlexHelp)
    return {"parallel_read_safe": True}
