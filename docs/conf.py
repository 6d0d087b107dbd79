"""Sphinx configuration of the dualmode documentation.

Build: ``pip install -e ".[docs]"`` then ``sphinx-build -W --keep-going docs docs/_build/html``
(``tests/test_docs.py`` does exactly that). Pages: every ``docs/*.md`` (MyST Markdown, picked
up by a glob, so new pages need no edit here), the API reference generated from the
docstrings (numpydoc), and a gallery of examples executed at build time (``examples/``).
"""

from __future__ import annotations

import os
import re

import dualmode

HERE = os.path.dirname(os.path.abspath(__file__))

project = "dualmode"
author = "the dualmode developers"
copyright = "2026, the dualmode developers"
release = version = dualmode.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]
templates_path = ["_templates"]

# -- API reference -----------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
# every object is documented once, in the module that defines it (packages list their modules)
autodoc_default_options = {"member-order": "bysource", "ignore-module-all": True}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_mock_imports = ["napari", "magicgui", "qtpy"]  # the optional viewer (pip install 'dualmode[view]')
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False



def _skip_foreign(app, what, name, obj, skip, options):
    """Skip members imported from other libraries (e.g. ``scipy.spatial.cKDTree``)."""
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and not module.startswith("dualmode") and what == "module":
        return True
    return None


_REPO_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)+(?!docs/)[^)\s]+\)")


def _repo_links_as_text(app, docname, source):
    """Links from a page to repository files outside docs/ (``[tests/x.py](../tests/x.py)``) open
    the source on a code host, but are no page of the site: keep their text, drop the link."""
    if os.fspath(app.env.doc2path(docname)).endswith(".md"):
        source[0] = _REPO_LINK.sub(r"\1", source[0])


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign)
    app.connect("source-read", _repo_links_as_text)




def _write_module_list() -> None:
    """``api/modules.rst``: an autosummary of every module of ``dualmode/`` (found on disk, so a
    new module appears in the reference without an edit here), in the toctree of ``api/index.rst``."""
    folder = os.path.dirname(dualmode.__file__)
    names = sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".py") and not n.startswith("_"))
    names += sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, "__init__.py")))
    lines = ["All modules", "===========", "", ".. autosummary::", "   :toctree: generated", "   :recursive:", ""]
    lines += [f"   dualmode.{name}" for name in ("recon", "registration", "io", *names)]
    with open(os.path.join(HERE, "api", "modules.rst"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


_write_module_list()

# -- MyST (the Markdown pages) -----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# -- gallery -----------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": os.path.join(HERE, "..", "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every plot_*.py is executed
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
    "abort_on_example_error": True,
    "show_memory": False,
    "reset_modules": ("matplotlib",),
}

# -- HTML --------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"dualmode {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []

# the gallery runs the examples with matplotlib's non-interactive backend
os.environ.setdefault("MPLBACKEND", "Agg")
