"""The documentation: the Sphinx site builds with warnings as errors (API reference, user guide,
executed gallery), the flat API's docstrings pass numpydoc validation, and their examples run."""

from __future__ import annotations

import doctest
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dualmode

ROOT = Path(__file__).resolve().parents[1]

#: numpydoc checks every flat-API docstring must pass (numpydoc.validate error codes)
CHECKS = {
    "GL08": "has a docstring",
    "SS01": "has a summary line",
    "SS03": "summary ends with a period",
    "PR01": "documents every parameter",
    "PR02": "documents no parameter the signature lacks",
    "RT01": "has a Returns section",
    "EX01": "has an Examples section",
    "GL07": "sections in numpydoc order",
}

#: the flat API of the issue (dualmode.__all__ has a few more names: classes and errors)
FLAT_FUNCTIONS = ("load_acquisition", "process_folder", "run_batch", "simulate_folder", "signflip_combine",
                  "register", "fuse", "nufft", "nufft_adjoint", "reconstruct_image")

#: which docstrings must cite their method (text that has to appear in the References section)
REFERENCES = {
    "signflip_combine": "PNAS",            # Lv et al., PNAS 118, e2023579118 (2021)
    "nufft": "Barnett", "nufft_adjoint": "Barnett",  # FINUFFT, SIAM J. Sci. Comput. 2019
}


def _qualified(name: str) -> str:
    obj = getattr(dualmode, name)
    return f"{obj.__module__}.{obj.__qualname__}"


@pytest.mark.parametrize("name", FLAT_FUNCTIONS)
def test_flat_api_docstring_is_valid(name):
    numpydoc_validate = pytest.importorskip("numpydoc.validate", reason="numpydoc is in the [docs] extra")
    result = numpydoc_validate.validate(_qualified(name))
    failed = [f"{code} ({CHECKS[code]}): {message}" for code, message in result["errors"] if code in CHECKS]
    assert not failed, f"{_qualified(name)}:\n" + "\n".join(failed)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_method_docstrings_cite_their_references(name):
    doc = getattr(dualmode, name).__doc__
    assert "References\n" in doc, f"{name} has no References section"
    assert REFERENCES[name] in doc.split("References\n", 1)[1], f"{name} does not cite {REFERENCES[name]}"


@pytest.mark.parametrize("name", FLAT_FUNCTIONS)
def test_flat_api_examples_run(name, tmp_path, monkeypatch):
    """The Examples of each flat-API function run as doctests (in an empty working folder)."""
    monkeypatch.chdir(tmp_path)
    obj = getattr(dualmode, name)
    module = importlib.import_module(obj.__module__)
    finder = doctest.DocTestFinder(recurse=False)
    (test,) = finder.find(obj, name, module=module, globs=dict(vars(module)))
    assert test.examples, f"{name} has no runnable example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} of {len(test.examples)} examples failed"


def test_sphinx_site_builds_without_warnings(tmp_path):
    """``sphinx-build -W --keep-going`` on a copy of docs/ and examples/ (the checkout stays clean)."""
    pytest.importorskip("sphinx", reason="sphinx is in the [docs] extra")
    pytest.importorskip("sphinx_gallery", reason="sphinx-gallery is in the [docs] extra")
    src = tmp_path / "repo"
    ignore = shutil.ignore_patterns("_build", "generated", "auto_examples", "__pycache__",
                                    "sg_execution_times.rst")
    shutil.copytree(ROOT / "docs", src / "docs", ignore=ignore)
    shutil.copytree(ROOT / "examples", src / "examples", ignore=ignore)
    for name in ("CHANGELOG.md", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                          str(src / "docs"), str(tmp_path / "html")],
                         capture_output=True, text=True, timeout=1200, env={**_env(), "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr[-6000:]
    html = tmp_path / "html"
    # the pages a reader expects: API reference (flat API + packages), user guide, executed gallery
    assert (html / "api" / "generated" / "dualmode.nufft.html").is_file()
    assert (html / "api" / "generated" / "dualmode.recon.nufft_plan.html").is_file()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.stem != "index":
            assert (html / f"{page.stem}.html").is_file(), f"docs/{page.name} is not in the site"
    gallery = html / "auto_examples"
    for example in sorted((ROOT / "examples").glob("plot_*.py")):
        page = (gallery / f"{example.stem}.html").read_text(encoding="utf-8")
        assert "sphx-glr-single-img" in page or "sphx-glr-multi-img" in page, f"{example.name} drew no figure"


def _env() -> dict:
    import os

    return dict(os.environ)
