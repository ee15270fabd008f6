"""Small server-side SVG charts for the dashboard: no JavaScript, nothing fetched at run time.

Every label goes through `escape`, so names from the database cannot inject markup.
"""
from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = {"critical": "#8e1b1b", "high": "#e74c3c", "medium": "#f39c12", "low": "#3498db", "info": "#95a5a6"}


def bars(values: Sequence[float], *, width: int = 240, height: int = 48, color: str = "#18bc9c",
         title: str = "", labels: list[str] | None = None) -> Markup:
    """A compact bar chart (e.g. hourly volume). Each bar has a <title> tooltip."""
    n = max(len(values), 1)
    top = max(values) if values and max(values) > 0 else 1
    gap = 1
    bar_w = max((width - gap * (n - 1)) / n, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#dee2e6"/>']
    for i, value in enumerate(values):
        h = (value / top) * (height - 4)
        x = i * (bar_w + gap)
        tip = f"{labels[i]}: {value:g}" if labels else f"{value:g}"
        parts.append(f'<rect x="{x:.1f}" y="{height - h - 1:.1f}" width="{bar_w:.1f}" height="{max(h, 0):.1f}" '
                     f'fill="{color}"><title>{escape(tip)}</title></rect>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - reviewed: every interpolated value is escaped or a constant


def gauge(fraction: float | None, *, width: int = 140, height: int = 12) -> Markup:
    """A horizontal fill bar for budget used; red past 90 %."""
    if fraction is None:
        return Markup('<span class="gv-na">n/a</span>')
    shown = min(max(fraction, 0.0), 1.0)
    color = "#e74c3c" if fraction >= 0.9 else "#f39c12" if fraction >= 0.7 else "#18bc9c"
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '  # noqa: S704 - values escaped
                  f'aria-label="{fraction:.0%} used"><rect width="{width}" height="{height}" rx="3" fill="#ecf0f1"/>'
                  f'<rect width="{shown * width:.1f}" height="{height}" rx="3" fill="{color}"/></svg>')


def lines(series: dict[str, list[float]], x_labels: list[str], *, width: int = 560, height: int = 180,
          title: str = "") -> Markup:
    """A multi-series line chart with a legend (findings by severity over time)."""
    pad_l, pad_r, pad_t, pad_b = 32, 24, 10, 40
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    top = max([max(v) for v in series.values() if v] + [1])
    n = max(len(x_labels), 2)
    x = lambda i: pad_l + plot_w * i / (n - 1)  # noqa: E731
    y = lambda v: pad_t + plot_h - plot_h * v / top  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for frac in (0, 0.5, 1):
        gy = pad_t + plot_h * (1 - frac)
        parts.append(f'<line x1="{pad_l}" y1="{gy:.1f}" x2="{width - pad_r}" y2="{gy:.1f}" stroke="#eceff1"/>'
                     f'<text x="{pad_l - 4}" y="{gy + 4:.1f}" font-size="10" text-anchor="end" fill="#7f8c8d">'
                     f'{top * frac:g}</text>')
    for i, label in enumerate(x_labels):
        if i % max(len(x_labels) // 7, 1) == 0 or i == len(x_labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{pad_t + plot_h + 14}" font-size="10" text-anchor="middle" '
                         f'fill="#7f8c8d">{escape(label)}</text>')
    legend_x = pad_l
    for name, values in series.items():
        color = PALETTE.get(name, "#34495e")
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<rect x="{legend_x}" y="{height - 12}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="{height - 3}" font-size="11" fill="#2c3e50">{escape(name)} '
                     f'({values[-1]:g})</text>')
        legend_x += 95
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - reviewed: every interpolated value is escaped or a constant
