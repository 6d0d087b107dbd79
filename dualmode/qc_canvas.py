"""A figure drawn as one composed RGB array plus text and markers (what ``qc.png`` is made of).

Each panel is an image resampled (nearest neighbour) into a fixed box of the page, with
its colour bar glued to its right edge, a scale bar and the RAS directions in place of
axis ticks. Colours come from 256-entry lookup tables (:mod:`dualmode.qc_colormaps`);
text, markers and legends are drawn once onto the finished array with Pillow
(``ImageDraw``, FreeType DejaVu fonts): no plotting library is imported, nothing is laid
out twice. Positions are page pixels from the bottom left (x right, y up), sizes in
points at the page's dpi, as in matplotlib.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from .qc_colormaps import lut

#: Pillow's DejaVu-metric fallback is used when matplotlib's bundled DejaVu fonts are absent.
_FONT_FILES = {"sans": "DejaVuSans.ttf", "monospace": "DejaVuSansMono.ttf"}


def _rgb(color: str) -> tuple[int, int, int]:
    from PIL import ImageColor

    return ImageColor.getrgb(color)[:3]


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def colorize(a: np.ndarray, cmap: str, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    """``a`` scaled to ``[lo, hi]`` (power ``gamma``) through the 256-level table ``cmap``: uint8 RGB.

    Examples
    --------
    >>> colorize(np.array([0.0, 1.0]), "gray", 0.0, 1.0).tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    x = np.subtract(a, lo, dtype=float)  # the steps in place on one float64 copy: same values, 1/4 the memory
    x /= hi - lo if hi > lo else 1.0
    np.clip(x, 0.0, 1.0, out=x)
    if gamma != 1.0:
        x **= gamma
    np.nan_to_num(x, copy=False)
    x *= 255.0
    return lut(cmap)[np.round(x, out=x).astype(np.intp)]


def _nice_length(span: float) -> float:
    """A round scale-bar length of about a fifth of ``span``."""
    target = span / 5.0
    base = 10.0 ** np.floor(np.log10(target))
    return float(max(m * base for m in (1, 2, 5) if m * base <= target))


@functools.lru_cache(maxsize=16)
def _font(family: str, size_px: int):
    """A FreeType font: matplotlib's bundled DejaVu file when installed (found, not imported), else Pillow's."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(root, "mpl-data", "fonts", "ttf", _FONT_FILES.get(family, _FONT_FILES["sans"]))
        if os.path.isfile(path):
            return ImageFont.truetype(path, size_px)
    return ImageFont.load_default(size_px)


@dataclass
class Panel:
    """Where a panel landed on the page: pixel box and the world extent it shows."""

    x0: int
    y0: int  # bottom edge, pixels from the page bottom
    w: int
    h: int
    extent: tuple[float, float, float, float]  # world x0, x1, y0, y1 (x0 < x1, y0 < y1)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """World ``(n, >=2)`` -> page pixels ``(n, 2)``."""
        xy = np.asarray(xy, float).reshape(-1, np.shape(xy)[-1] if np.ndim(xy) else 2)
        e = self.extent
        px = self.x0 + (xy[:, 0] - e[0]) / (e[1] - e[0]) * self.w
        py = self.y0 + (xy[:, 1] - e[2]) / (e[3] - e[2]) * self.h
        return np.stack([px, py], axis=1)


@dataclass
class Text:
    """One text item: anchor point (page pixels from the bottom left) and its style."""

    x: float
    y: float
    s: str
    fontsize: float = 8.0
    ha: str = "left"
    va: str = "baseline"
    color: str = "black"
    family: str = "sans"
    rotation: int = 0
    bbox: dict | None = None


@dataclass
class Markers:
    """Markers at page pixels ``xy``: ``marker`` in ``o + x s d``, size ``s`` (points²) as in matplotlib."""

    xy: np.ndarray
    marker: str = "o"
    s: float = 36.0
    color: str = "black"
    filled: bool = False
    linewidths: float = 1.0
    label: str | None = None


@dataclass
class Legend:
    """Marker + label rows anchored at a page point (``anchor``: ``"lower left"`` or ``"upper left"``)."""

    x: float
    y: float
    anchor: str
    entries: list = field(default_factory=list)
    fontsize: float = 6.5


_TEXT_STYLE = {"fontsize", "ha", "va", "color", "family", "rotation", "bbox"}
_ALIGN_X = {"left": 0.0, "center": 0.5, "right": 1.0}
_ALIGN_Y = {"top": 0.0, "center": 0.5, "bottom": 1.0, "baseline": 1.0}


class Page:
    """A white page of ``width x height`` pixels at ``dpi``; panels are painted into one array.

    Text, markers and legends are recorded in drawing order and drawn once by
    :meth:`render` over the painted array.
    """

    def __init__(self, width: int, height: int, dpi: int):
        from PIL import Image

        self.width, self.height, self.dpi = width, height, dpi
        self.image = Image.new("RGB", (width, height), "white")  # the one page buffer (no numpy copy)
        self.items: list[Text | Markers] = []
        self.text_boxes: list[tuple[float, float, float, float]] = []  # set by render()
        self._final = False  # items already drawn into self.image (render(keep=False))

    @property
    def canvas(self) -> np.ndarray:
        """The painted page (images, frames, colour and scale bars) as an ``(H, W, 3)`` uint8 copy."""
        return np.asarray(self.image)

    def _paste(self, rgb: np.ndarray, left: int, top: int) -> None:
        from PIL import Image

        self.image.paste(Image.fromarray(np.ascontiguousarray(rgb, np.uint8)), (int(left), int(top)))

    def _fill(self, box: tuple[int, int, int, int], color) -> None:
        """Fill page pixels ``[x0, x1) x [y0, y1)`` (image rows from the top)."""
        from PIL import ImageDraw

        x0, y0, x1, y1 = box
        if x1 > x0 and y1 > y0:
            ImageDraw.Draw(self.image).rectangle([x0, y0, x1 - 1, y1 - 1], fill=tuple(int(v) for v in color))

    def px(self, points: float) -> float:
        """Points -> page pixels."""
        return float(points) * self.dpi / 72.0

    def paint(self, rgb_xy: np.ndarray, extent, box: tuple[int, int, int, int]) -> Panel:
        """Paint an ``[x, y, 3]`` image covering world ``extent`` into ``box = (x0, y0, w, h)``.

        The image keeps its physical aspect ratio (centred in the box); x runs right and y up.
        Float images are taken as RGB in ``[0, 1]``, uint8 images as they are.
        """
        rgb = _to_uint8(np.asarray(rgb_xy))
        x0w, x1w, y0w, y1w = (float(v) for v in extent)
        if x0w > x1w:
            rgb, (x0w, x1w) = rgb[::-1], (x1w, x0w)
        if y0w > y1w:
            rgb, (y0w, y1w) = rgb[:, ::-1], (y1w, y0w)
        bx, by, bw, bh = box
        scale = min(bw / (x1w - x0w), bh / (y1w - y0w))
        w, h = max(1, int(round((x1w - x0w) * scale))), max(1, int(round((y1w - y0w) * scale)))
        px, py = bx + (bw - w) // 2, by + (bh - h) // 2
        ix = ((np.arange(w) + 0.5) * rgb.shape[0] / w).astype(int)
        iy = ((np.arange(h) + 0.5) * rgb.shape[1] / h).astype(int)[::-1]  # page rows run downwards
        top = self.height - (py + h)
        self._paste(np.transpose(rgb[ix][:, iy], (1, 0, 2)), px, top)
        return Panel(px, py, w, h, (x0w, x1w, y0w, y1w))

    def frame(self, panel: Panel, color: str = "#444444") -> None:
        """A 1-pixel frame around a panel."""
        top = self.height - (panel.y0 + panel.h)
        c, x0, x1 = _rgb(color), panel.x0 - 1, panel.x0 + panel.w + 1
        self._fill((x0, top - 1, x1, top), c)
        self._fill((x0, top + panel.h, x1, top + panel.h + 1), c)
        self._fill((x0, top - 1, x0 + 1, top + panel.h + 1), c)
        self._fill((x1 - 1, top - 1, x1, top + panel.h + 1), c)

    def colorbar(self, panel: Panel, cmap: str, lo: float, hi: float, label: str = "", gamma: float = 1.0) -> None:
        """A colour bar glued to the right edge of ``panel``, with its limits written beside it."""
        ramp = np.linspace(0.0, 1.0, panel.h)[::-1]
        top = self.height - (panel.y0 + panel.h)
        x = panel.x0 + panel.w + 3
        self._paste(np.repeat(colorize(ramp, cmap, 0.0, 1.0, gamma)[:, None, :], 12, axis=1), x, top)
        kw = {"fontsize": 6.5, "va": "center", "ha": "left"}
        for value, y in ((hi, panel.y0 + panel.h - 6), (lo, panel.y0 + 6)):
            self.text(x + 15, y, f"{value:.3g}", **kw)
        if label:
            self.text(x + 15, panel.y0 + panel.h / 2, label, rotation=90, fontsize=6.5, va="center", ha="left")

    def text(self, x: float, y: float, s: str, **kw) -> Text:
        """Text at page pixel ``(x, y)`` (from the bottom left); style keywords as :class:`Text`."""
        unknown = set(kw) - _TEXT_STYLE
        if unknown:
            raise TypeError(f"unknown text style {sorted(unknown)}")
        item = Text(x, y, s, **kw)
        self.items.append(item)
        return item

    def title(self, panel: Panel, s: str, **kw) -> None:
        self.text(panel.x0 + panel.w / 2, panel.y0 + panel.h + 6, s, ha="center", va="bottom", fontsize=9, **kw)

    def scalebar(self, panel: Panel, unit: str, directions: tuple[str, str] | None = ("R", "A")) -> None:
        """A scale bar in the panel's lower-left corner and the world directions of +x, +y."""
        span = panel.extent[1] - panel.extent[0]
        length = _nice_length(span)
        px = length / span * panel.w
        x, y = panel.x0 + 8, panel.y0 + 8
        top = self.height - y
        self._fill((int(x), top - 2, int(x + px), top + 1), (255, 255, 255))
        box = {"facecolor": "black", "alpha": 0.45, "pad": 1.0}
        self.text(x + px / 2, y + 5, f"{length:g} {unit}", ha="center", va="bottom", fontsize=6.5, color="white",
                  bbox=box)
        if directions:
            self.text(panel.x0 + panel.w - 5, panel.y0 + 5, directions[0], ha="right", va="bottom", fontsize=7,
                      color="white", bbox=box)
            self.text(panel.x0 + 5, panel.y0 + panel.h - 5, directions[1], ha="left", va="top", fontsize=7,
                      color="white", bbox=box)

    def markers(self, panel: Panel, xy: np.ndarray, *, s: float = 36.0, marker: str = "o", c: str | None = None,
                facecolors: str | None = None, edgecolors: str | None = None, linewidths: float = 1.0,
                label: str | None = None) -> None:
        """Markers at world positions ``xy`` of ``panel`` (matplotlib ``scatter`` keywords), clipped to it."""
        if xy is None or not len(xy):
            return
        p = panel.to_pixels(xy)
        inside = ((p[:, 0] >= panel.x0) & (p[:, 0] <= panel.x0 + panel.w)
                  & (p[:, 1] >= panel.y0) & (p[:, 1] <= panel.y0 + panel.h))
        color = edgecolors or c or "black"
        self.items.append(Markers(p[inside], marker, s, color, facecolors not in (None, "none"), linewidths, label))

    @property
    def legend_entries(self) -> list[Markers]:
        """The labelled marker sets so far (what :meth:`legend` lists)."""
        return [m for m in self.items if isinstance(m, Markers) and m.label]

    def legend(self, x: float, y: float, anchor: str = "lower left", fontsize: float = 6.5) -> None:
        """One row per labelled marker set (symbol + label), the block's ``anchor`` corner at ``(x, y)``."""
        entries = self.legend_entries
        row = self.px(fontsize) * 1.7
        top = y + len(entries) * row if anchor == "lower left" else y
        for k, m in enumerate(entries):
            yc = top - (k + 0.5) * row
            self.items.append(Markers(np.array([[x + self.px(7), yc]]), m.marker, m.s, m.color, m.filled,
                                      m.linewidths))
            self.text(x + self.px(17), yc, m.label, fontsize=fontsize, va="center", ha="left")

    def _layout(self, draw, t: Text):
        """Font, image-pixel box ``(x0, y0, x1, y1)`` and glyph offset of one text item."""
        font = _font(t.family, max(1, round(self.px(t.fontsize))))
        spacing = max(1, round(0.25 * font.size))
        l, tp, r, b = draw.multiline_textbbox((0, 0), t.s, font=font, spacing=spacing)
        w, h = (b - tp, r - l) if t.rotation % 180 else (r - l, b - tp)
        x0 = t.x - _ALIGN_X[t.ha] * w
        y0 = (self.height - t.y) - _ALIGN_Y[t.va] * h
        return font, spacing, (x0, y0, x0 + w, y0 + h), (l, tp)

    def _draw_text(self, image, draw, t: Text) -> tuple:
        from PIL import Image, ImageDraw

        font, spacing, (x0, y0, x1, y1), (l, tp) = self._layout(draw, t)
        if t.bbox:
            pad = self.px(t.bbox.get("pad", 1.0))
            fill = (*_rgb(t.bbox.get("facecolor", "white")), round(255 * t.bbox.get("alpha", 1.0)))
            draw.rectangle([x0 - pad, y0 - pad, x1 + pad, y1 + pad], fill=fill)
        if t.rotation % 180:
            w, h = round(y1 - y0), round(x1 - x0)
            mask = Image.new("L", (w, h), 0)
            ImageDraw.Draw(mask).multiline_text((-l, -tp), t.s, font=font, fill=255, spacing=spacing)
            image.paste(_rgb(t.color), (round(x0), round(y0)), mask.rotate(t.rotation, expand=True))
        else:
            draw.multiline_text((x0 - l, y0 - tp), t.s, font=font, fill=_rgb(t.color), spacing=spacing)
        return x0, y0, x1, y1

    def _draw_markers(self, draw, m: Markers) -> None:
        r = self.px(np.sqrt(m.s)) / 2.0
        width = max(1, round(self.px(m.linewidths)))
        color = _rgb(m.color)
        for x, y in m.xy:
            yy = self.height - y
            if m.marker == "o":
                draw.ellipse([x - r, yy - r, x + r, yy + r], outline=color, width=width, fill=color if m.filled else None)
            elif m.marker in "+x":
                d = r if m.marker == "+" else r * 0.8
                segments = ([(x - d, yy), (x + d, yy)], [(x, yy - d), (x, yy + d)]) if m.marker == "+" else \
                    ([(x - d, yy - d), (x + d, yy + d)], [(x - d, yy + d), (x + d, yy - d)])
                for seg in segments:
                    draw.line(seg, fill=color, width=width)
            else:  # "s" square, "d" thin diamond
                d = r * 0.75
                pts = [(x - d, yy - d), (x + d, yy - d), (x + d, yy + d), (x - d, yy + d)] if m.marker == "s" \
                    else [(x, yy - 1.1 * r), (x + 0.65 * r, yy), (x, yy + 1.1 * r), (x - 0.65 * r, yy)]
                draw.polygon(pts, outline=color, width=width, fill=color if m.filled else None)

    def render(self, keep: bool = True):
        """The page as a Pillow RGB image: the painted panels, then every text and marker item in order.

        Sets :attr:`text_boxes` (image pixels, top-left origin) of every non-empty text. With
        ``keep=False`` the items are drawn into the page buffer itself (no copy: :meth:`save`).
        """
        from PIL import ImageDraw

        if self._final:
            return self.image
        image = self.image.copy() if keep else self.image
        self._final = not keep
        draw = ImageDraw.Draw(image, "RGBA")  # RGBA fills blend (the scale-bar label boxes)
        self.text_boxes = []
        for item in self.items:
            if isinstance(item, Markers):
                self._draw_markers(draw, item)
            else:
                box = self._draw_text(image, draw, item)
                if item.s.strip():
                    self.text_boxes.append(box)
        return image

    def save(self, path, compress_level: int = 1) -> None:
        """Render once and write a PNG (Pillow, ``compress_level`` 1: fast, a few hundred kB)."""
        self.render(keep=False).save(path, format="PNG", compress_level=compress_level, dpi=(self.dpi, self.dpi))
