"""A figure drawn as one composed RGB array plus text and markers (what ``qc.png`` is made of).

Each panel is an image resampled (nearest neighbour) into a fixed box of the page, with
its colour bar glued to its right edge, a scale bar and the RAS directions in place of
axis ticks. The page is one ``figimage`` plus a few dozen text and marker artists:
matplotlib lays out nothing, so rendering costs a fraction of a subplot grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color.lstrip("#")[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def colorize(a: np.ndarray, cmap: str, lo: float, hi: float, gamma: float = 1.0) -> np.ndarray:
    """``a`` scaled to ``[lo, hi]`` (power ``gamma``) through a matplotlib colormap: RGB floats."""
    from matplotlib import colormaps

    x = np.clip((np.asarray(a, float) - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    if gamma != 1.0:
        x = x ** gamma
    return colormaps[cmap](x)[..., :3]


def _nice_length(span: float) -> float:
    """A round scale-bar length of about a fifth of ``span``."""
    target = span / 5.0
    base = 10.0 ** np.floor(np.log10(target))
    return float(max(m * base for m in (1, 2, 5) if m * base <= target))


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


class Page:
    """A white page of ``width x height`` pixels at ``dpi``; panels are painted into one array."""

    def __init__(self, width: int, height: int, dpi: int):
        from matplotlib.figure import Figure

        self.width, self.height, self.dpi = width, height, dpi
        self.canvas = np.full((height, width, 3), 255, np.uint8)
        self.fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        self.overlay = self.fig.add_axes((0, 0, 1, 1), zorder=1)
        self.overlay.set_xlim(0, width)
        self.overlay.set_ylim(0, height)
        self.overlay.set_axis_off()
        self.overlay.patch.set_visible(False)

    def paint(self, rgb_xy: np.ndarray, extent, box: tuple[int, int, int, int]) -> Panel:
        """Paint an ``[x, y, 3]`` image covering world ``extent`` into ``box = (x0, y0, w, h)``.

        The image keeps its physical aspect ratio (centred in the box); x runs right and y up.
        """
        rgb = np.asarray(rgb_xy, np.float32)
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
        self.canvas[top:top + h, px:px + w] = _to_uint8(np.transpose(rgb[ix][:, iy], (1, 0, 2)))
        return Panel(px, py, w, h, (x0w, x1w, y0w, y1w))

    def frame(self, panel: Panel, color: str = "#444444") -> None:
        """A 1-pixel frame around a panel."""
        top = self.height - (panel.y0 + panel.h)
        c = _to_uint8(_rgb(color))
        self.canvas[top - 1, panel.x0 - 1:panel.x0 + panel.w + 1] = c
        self.canvas[top + panel.h, panel.x0 - 1:panel.x0 + panel.w + 1] = c
        self.canvas[top - 1:top + panel.h + 1, panel.x0 - 1] = c
        self.canvas[top - 1:top + panel.h + 1, panel.x0 + panel.w] = c

    def colorbar(self, panel: Panel, cmap: str, lo: float, hi: float, label: str = "", gamma: float = 1.0) -> None:
        """A colour bar glued to the right edge of ``panel``, with its limits written beside it."""
        ramp = np.linspace(0.0, 1.0, panel.h)[::-1]
        strip = colorize(ramp, cmap, 0.0, 1.0, gamma)
        top = self.height - (panel.y0 + panel.h)
        x = panel.x0 + panel.w + 3
        self.canvas[top:top + panel.h, x:x + 12] = _to_uint8(strip)[:, None, :]
        kw = {"fontsize": 6.5, "va": "center", "ha": "left"}
        for value, y in ((hi, panel.y0 + panel.h - 4), (lo, panel.y0 + 4)):
            self.text(x + 15, y, f"{value:.3g}", **kw)
        if label:
            self.text(x + 15, panel.y0 + panel.h / 2, label, rotation=90, fontsize=6.5, va="center", ha="left")

    def text(self, x: float, y: float, s: str, **kw):
        """Text at page pixel ``(x, y)`` (from the bottom left)."""
        kw.setdefault("fontsize", 8)
        return self.fig.text(x / self.width, y / self.height, s, **kw)

    def title(self, panel: Panel, s: str, **kw) -> None:
        self.text(panel.x0 + panel.w / 2, panel.y0 + panel.h + 6, s, ha="center", va="bottom", fontsize=9, **kw)

    def scalebar(self, panel: Panel, unit: str, directions: tuple[str, str] | None = ("R", "A")) -> None:
        """A scale bar in the panel's lower-left corner and the world directions of +x, +y."""
        span = panel.extent[1] - panel.extent[0]
        length = _nice_length(span)
        px = length / span * panel.w
        x, y = panel.x0 + 8, panel.y0 + 8
        top = self.height - y
        self.canvas[top - 2:top + 1, int(x):int(x + px)] = 255
        box = {"facecolor": "black", "alpha": 0.45, "pad": 1.0, "linewidth": 0}
        self.text(x + px / 2, y + 5, f"{length:g} {unit}", ha="center", va="bottom", fontsize=6.5, color="white",
                  bbox=box)
        if directions:
            self.text(panel.x0 + panel.w - 5, panel.y0 + 5, directions[0], ha="right", va="bottom", fontsize=7,
                      color="white", bbox=box)
            self.text(panel.x0 + 5, panel.y0 + panel.h - 5, directions[1], ha="left", va="top", fontsize=7,
                      color="white", bbox=box)

    def markers(self, panel: Panel, xy: np.ndarray, **kw) -> None:
        """Markers at world positions ``xy`` of ``panel`` (one scatter artist), clipped to the panel."""
        if xy is None or not len(xy):
            return
        p = panel.to_pixels(xy)
        inside = ((p[:, 0] >= panel.x0) & (p[:, 0] <= panel.x0 + panel.w)
                  & (p[:, 1] >= panel.y0) & (p[:, 1] <= panel.y0 + panel.h))
        self.overlay.scatter(p[inside, 0], p[inside, 1], **kw)

    def save(self, path, compress_level: int = 1) -> None:
        """Draw the text and markers once (Agg, transparent), lay them over the canvas, write PNG.

        The page array never goes through matplotlib's image resampling: it is composited
        with the rendered overlay in numpy and encoded by Pillow.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from PIL import Image

        self.fig.patch.set_alpha(0.0)
        agg = FigureCanvasAgg(self.fig)
        agg.draw()
        over = np.asarray(agg.buffer_rgba())[: self.height, : self.width]
        drawn = over[..., 3] > 0  # text and markers cover a few % of the page: blend only there
        alpha = over[drawn, 3:].astype(np.float32) / 255.0
        out = self.canvas.copy()
        out[drawn] = np.round(over[drawn, :3] * alpha + out[drawn] * (1.0 - alpha))  # straight alpha (Agg)
        image = Image.fromarray(out)
        image.save(path, format="PNG", compress_level=compress_level, dpi=(self.dpi, self.dpi))
