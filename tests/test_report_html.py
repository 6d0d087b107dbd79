"""The study report OUT/index.html, opened in a real headless browser (Debian's chromium)."""

import os
import re
import shutil
import subprocess

import pytest

from dualmode.report_html import folder_row, write_study_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt install chromium)")


def _chromium(*args, timeout=180):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--user-data-dir=" + os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                                     f"dualmode-chromium-{os.getpid()}"), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def _rows(dom):
    return re.findall(r'<tr class="(\w+)">(.*?)</tr>', dom, flags=re.S)


def test_index_is_self_contained_and_regenerated_by_the_batch(demo_batch):
    out, summary, _ = demo_batch
    html = (out / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # no network: images are data URIs
    assert html.count('src="data:image/') == 2
    assert os.path.isfile(out / "demo" / "report.html") and os.path.isfile(out / "nomatch" / "report.html")
    row = folder_row(summary["folders"][0], {})
    assert row["status"] == "ok" and row["snr"] > 10


@needs_chromium
def test_index_renders_in_chromium_with_the_failure_visible(demo_batch, tmp_path):
    out, summary, _ = demo_batch
    dom = _chromium("--dump-dom", (out / "index.html").as_uri())
    rows = _rows(dom)
    assert [cls for cls, _ in rows] == ["failed", "ok"]  # one row per folder, failures first
    failed = rows[0][1]
    assert "nomatch" in failed and "no consistent particle match" in failed
    assert 'href="nomatch/report.html"' in failed
    ok = rows[1][1]
    assert re.search(r'data-sort="5"|>5<', ok) or ">5</td>" in ok  # matched particles
    shot = tmp_path / "index.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,700", (out / "index.html").as_uri())
    from PIL import Image
    import numpy as np

    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    failed_bg = (abs(rgb[..., 0] - 0xFD) < 4) & (abs(rgb[..., 1] - 0xE7) < 4) & (abs(rgb[..., 2] - 0xE7) < 4)
    assert failed_bg.sum() > 20000  # the failed row is highlighted
    if os.environ.get("DUALMODE_KEEP_SCREENSHOT_DIR"):
        shutil.copy(shot, os.path.join(os.environ["DUALMODE_KEEP_SCREENSHOT_DIR"], "study-report.png"))


@needs_chromium
def test_columns_sort_in_the_browser(demo_batch, tmp_path):
    out, _, _ = demo_batch
    page = tmp_path / "index.html"
    html = (out / "index.html").read_text()
    # click the "matched" header twice (descending) after the page's own script ran
    click = "<script>var th=document.querySelectorAll('th')[5];th.click();th.click();</script></body>"
    page.write_text(html.replace("</body>", click))
    dom = _chromium("--dump-dom", page.as_uri())
    assert [cls for cls, _ in _rows(dom)] == ["ok", "failed"]  # 5 matched before none
    assert 'class="desc"' in dom


def test_per_folder_page_has_the_full_figure_and_report(demo_batch):
    out, _, _ = demo_batch
    page = (out / "nomatch" / "report.html").read_text()
    assert "data:image/png;base64," in page and "no consistent particle match" in page
    assert "&quot;registration&quot;" in page and "../index.html" in page  # report.json, escaped


def test_report_survives_a_folder_without_outputs(tmp_path):
    summary = {"folders": [{"folder": "/x/bad", "name": "bad", "status": "failed", "seconds": 0.1,
                            "error": "/x/bad/acquisition.json: missing field mri"}], "failed": 1}
    path = write_study_report(tmp_path, summary)
    html = open(path).read()
    assert "no picture" in html and "missing field mri" in html
