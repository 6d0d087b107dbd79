"""The study report: ``OUT/index.html`` and one page per folder, self-contained HTML.

One row per folder (thumbnail of ``qc.png``, status, SNR, background suppression, matched
particles, leave-one-out TRE, time, error), failures highlighted and listed first, every
column sortable by a click on its header; each row links to ``OUT/<name>/report.html``
with the full QC figure, the numbers and ``report.json``. Images are embedded as data
URIs and the sorting script is inline: the pages open from a file system, an e-mail
attachment or an archive, without network. Written at the end of every ``dualmode run``
(:func:`dualmode.batch.run_batch`), in the spirit of the MRIQC / fMRIPrep reports.
"""

from __future__ import annotations

import base64
import html
import io as stdio
import json
import os

from .atomic import write_text

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em} .meta{color:#555;margin-bottom:1em}
.counts span{display:inline-block;padding:.2em .6em;margin-right:.5em;border-radius:.3em;font-weight:600}
.c-ok{background:#e6f4ea;color:#1e6b34} .c-failed{background:#fde7e7;color:#a31515}
.c-skipped{background:#eef;color:#334}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #ddd;padding:.35em .6em;
text-align:left;vertical-align:middle} th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}
th:after{content:" \\2195";color:#aaa} th.asc:after{content:" \\2191";color:#222}
th.desc:after{content:" \\2193";color:#222} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed{background:#fde7e7} tr.failed td.status{color:#a31515;font-weight:700}
tr.ok td.status{color:#1e6b34;font-weight:700} td.error{color:#a31515;max-width:32em;font-size:.9em}
img.thumb{width:240px;display:block;border:1px solid #ccc} a{color:#0b57d0}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em} img.full{max-width:100%;border:1px solid #ccc}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = !th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc ? 'asc' : 'desc');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

COLUMNS = ("QC", "folder", "status", "SNR", "background suppression (dB)", "matched", "LOO TRE (µm)",
           "time (s)", "error")


def _data_uri(png_path: str, width: int | None = None) -> str | None:
    """``qc.png`` as a data URI, downscaled to ``width`` pixels (JPEG) for thumbnails."""
    if not os.path.isfile(png_path):
        return None
    with open(png_path, "rb") as f:
        data = f.read()
    if width is None:
        return "data:image/png;base64," + base64.b64encode(data).decode()
    img = _decoded(data)
    factor = img.width // width
    if factor > 1:  # box-filter reduction by a whole factor (1920 px -> 240 px: exact)
        img = img.reduce(factor)
    img.thumbnail((width, width * img.height // max(img.width, 1)))  # whatever is left, resampled
    buf = stdio.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _decoded(png: bytes):
    """A PIL image of PNG bytes: libspng through imagecodecs for 8-bit RGB(A) (half of Pillow's decoding
    time, which is most of a thumbnail's cost), Pillow for anything else."""
    from PIL import Image

    try:
        import imagecodecs

        rgb = imagecodecs.png_decode(png)
        if rgb.dtype == "uint8" and rgb.ndim == 3 and rgb.shape[2] in (3, 4):
            return Image.fromarray(rgb)
    except Exception:  # noqa: BLE001 - an unusual PNG: Pillow decides
        pass
    img = Image.open(stdio.BytesIO(png))
    img.load()
    return img


def _report(out_root: str, name: str) -> dict:
    try:
        with open(os.path.join(out_root, name, "report.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def folder_row(entry: dict, report: dict) -> dict:
    """The numbers of one folder: from its ``summary.json`` entry and its ``report.json``."""
    sf = report.get("signflip", {}) or {}
    rg = report.get("registration", {}) or {}
    tre = rg.get("tre_loo_mm")
    snr = entry.get("snr", sf.get("snr"))
    return {
        "name": entry.get("name") or os.path.basename(str(entry.get("folder", ""))),
        "status": entry.get("status", "unknown"),
        "snr": snr,
        "suppression_db": sf.get("background_suppression_db"),
        "matched": entry.get("matched", rg.get("matched")),
        "tre_um": None if tre is None else 1000.0 * tre,
        "seconds": entry.get("seconds"),
        "error": entry.get("error") or rg.get("error"),
    }


def _num(value, fmt: str) -> tuple[str, str]:
    """(shown text, sort key) of a number that may be missing."""
    if value is None or (isinstance(value, float) and value != value):
        return "&ndash;", "-1e300"
    return format(value, fmt), repr(float(value))


def _cell(text: str, sort: str, cls: str = "") -> str:
    return f'<td{f" class={cls!r}" if cls else ""} data-sort="{html.escape(sort, quote=True)}">{text}</td>'


def _row_html(row: dict, thumb: str | None, link: str | None) -> str:
    name = html.escape(row["name"])
    picture = f'<img class="thumb" alt="qc.png of {name}" src="{thumb}">' if thumb else "no picture"
    if link:
        picture, shown = f'<a href="{link}">{picture}</a>', f'<a href="{link}">{name}</a>'
    else:
        shown = name
    cells = [_cell(picture, row["name"]), _cell(shown, row["name"]),
             _cell(html.escape(row["status"]), row["status"], "status")]
    for key, fmt in (("snr", ".1f"), ("suppression_db", ".1f"), ("matched", "d"), ("tre_um", ".0f"),
                     ("seconds", ".2f")):
        value = row[key]
        text, sort = _num(int(value) if key == "matched" and value is not None else value, fmt)
        cells.append(_cell(text, sort, "num"))
    cells.append(_cell(html.escape(row["error"] or ""), row["error"] or "", "error"))
    return f'<tr class="{html.escape(row["status"])}">' + "".join(cells) + "</tr>"


def _page(title: str, body: str, script: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")


def folder_page(out_root: str, row: dict, report: dict) -> str | None:
    """Write ``OUT/<name>/report.html`` (full QC figure, numbers, report.json); return its relative link."""
    folder = os.path.join(out_root, row["name"])
    if not os.path.isdir(folder):
        return None
    full = _data_uri(os.path.join(folder, "qc.png"))
    name = html.escape(row["name"])
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in row.items() if v is not None and k != "name")
    body = (f'<p><a href="../index.html">&larr; study report</a></p><h1>{name}: {html.escape(row["status"])}</h1>'
            + (f'<p class="c-failed" style="padding:.5em">{html.escape(row["error"])}</p>' if row["error"] else "")
            + (f'<img class="full" alt="qc.png of {name}" src="{full}">' if full else "<p>no qc.png</p>")
            + f"<h2>numbers</h2><table>{facts}</table><h2>report.json</h2>"
            + f"<pre>{html.escape(json.dumps(report, indent=2))}</pre>")
    write_text(os.path.join(folder, "report.html"), _page(f"dualmode: {row['name']}", body))
    return f"{row['name']}/report.html"


class StudyReport:
    """``OUT/index.html`` built as a batch goes: each folder's page and thumbnail are made when the
    folder is :meth:`add`-ed (while the other folders still run), so :meth:`write` at the end
    only assembles the table.

    Examples
    --------
    >>> study = StudyReport("out")                                    # doctest: +SKIP
    >>> study.add(entry)                                              # doctest: +SKIP
    >>> study.write(json.load(open("out/summary.json")))              # doctest: +SKIP
    'out/index.html'
    """

    def __init__(self, out_root: str | os.PathLike):
        self.out_root = os.fspath(out_root)
        self.rows: dict[tuple, str] = {}

    @staticmethod
    def _key(entry: dict) -> tuple:
        return tuple(str(entry.get(k)) for k in ("name", "status", "error", "seconds", "folder"))

    def add(self, entry: dict) -> str:
        """Write the folder's ``report.html``; keep its table row (HTML) for :meth:`write`."""
        report = _report(self.out_root, entry.get("name", ""))
        row = folder_row(entry, report)
        link = folder_page(self.out_root, row, report)
        thumb = _data_uri(os.path.join(self.out_root, row["name"], "qc.png"), 240)
        self.rows[self._key(entry)] = html_row = _row_html(row, thumb, link)
        return html_row

    def write(self, summary: dict) -> str:
        """Write ``index.html`` for ``summary`` (folders not added yet are added now); return its path."""
        entries = list(summary.get("folders", []))
        rank = {"failed": 0, "pending": 1, "skipped": 2, "ok": 3}
        rows_html = [self.rows.get(self._key(entry)) or self.add(entry)
                     for entry in sorted(entries, key=lambda e: (rank.get(e.get("status"), 1), str(e.get("name"))))]
        counts = "".join(f'<span class="c-{k}">{summary.get(k, 0)} {k}</span>' for k in ("ok", "failed", "skipped")
                         if summary.get(k))
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        out_root = self.out_root
        body = (f"<h1>dualmode study report</h1><div class='meta'>{len(entries)} folders in "
                f"{html.escape(out_root)}; started {html.escape(str(summary.get('started', '')))}, "
                f"{summary.get('seconds', 0)} s, dualmode {html.escape(str(summary.get('dualmode', '')))}; "
                f"state: {html.escape(str(summary.get('state', '')))}</div><p class='counts'>{counts}</p>"
                f"<table class='sortable' id='folders'><thead><tr>{head}</tr></thead><tbody>"
                + "".join(rows_html) + "</tbody></table>")
        path = os.path.join(out_root, "index.html")
        write_text(path, _page("dualmode study report", body, _SORT_JS))
        return path


def write_study_report(out_root: str | os.PathLike, summary: dict) -> str:
    """Write ``out_root/index.html`` and the per-folder pages from a batch ``summary``; return the path.

    Parameters
    ----------
    out_root : path-like
        The batch output root (``summary.json`` lives there).
    summary : dict
        The content of ``summary.json`` (:func:`dualmode.batch.run_batch`).

    Examples
    --------
    >>> write_study_report("out", json.load(open("out/summary.json")))  # doctest: +SKIP
    'out/index.html'
    """
    return StudyReport(out_root).write(summary)


def update_study_report(out_root: str | os.PathLike, summary: dict, study: StudyReport | None = None) -> str | None:
    """:meth:`StudyReport.write` (of ``study``, with the folders it has already), logging instead of
    raising: the overview never costs a batch its results."""
    import logging

    try:
        return (study or StudyReport(out_root)).write(summary)
    except Exception:  # noqa: BLE001 - any failure here is reported, the batch's files stay
        logging.getLogger("dualmode").warning("study report %s/index.html not written", out_root, exc_info=True)
        return None
