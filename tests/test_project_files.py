"""The files users expect next to the code agree with each other and with the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

import dualmode

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_license_file_matches_the_spdx_string():
    assert _pyproject()["license"] == "BSD-3-Clause"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder nor the names of its" in text  # clause 3


def test_citation_file_names_the_software_and_the_method():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == dualmode.__version__ == _pyproject()["version"]
    assert cff["license"] == _pyproject()["license"]
    method = cff["preferred-citation"]
    assert method["doi"] == "10.1073/pnas.2023579118" and method["start"] == "e2023579118"
    assert method["volume"] == 118 and method["year"] == 2021
    assert method["authors"][0]["family-names"] == "Lv"


def test_changelog_has_unreleased_and_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "\n## Unreleased\n" in text
    assert f"\n## {dualmode.__version__}\n" in text
