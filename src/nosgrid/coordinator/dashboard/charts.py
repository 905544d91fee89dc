"""Charts as inline SVG, drawn on the server: no chart library, no script, readable by
screen readers (each chart has a ``<title>`` and the page shows the same figures as a
table next to it)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 640, 200, 28


def bar_chart(labels: Sequence[str], values: Sequence[int], *, title: str,
              value_label: Sequence[str] | None = None, top_label: str = "") -> str:
    """Vertical bars, one per label (values in any integer unit, drawn to scale);
    ``top_label`` names the tallest bar's value at the top of the scale."""
    n = max(1, len(values))
    top = max([*values, 1])
    slot = (WIDTH - 2 * PAD) / n
    bars = []
    for i, v in enumerate(values):
        h = (HEIGHT - 2 * PAD) * v / top
        x = PAD + i * slot + slot * 0.15
        y = HEIGHT - PAD - h
        tip = value_label[i] if value_label else str(v)
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{h:.1f}" class="bar"><title>{escape(labels[i])}: '
                    f'{escape(tip)}</title></rect>')
    step = max(1, n // 7)
    ticks = [f'<text x="{PAD + i * slot + slot / 2:.1f}" y="{HEIGHT - 8}" '
             f'text-anchor="middle" class="tick">{escape(labels[i])}</text>'
             for i in range(0, len(labels), step)]
    return _svg(title, [_axis(), _top(top_label), *bars, *ticks])


def line_chart(values: Sequence[int], *, title: str, x_label: str = "",
               top_label: str = "") -> str:
    """One line over evenly spaced points (e.g. cumulative emission by epoch)."""
    if not values:
        return _svg(title, [_axis()])
    top = max([*values, 1])
    n = max(1, len(values) - 1)
    pts = " ".join(f"{PAD + (WIDTH - 2 * PAD) * i / n:.1f},"
                   f"{HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top:.1f}"
                   for i, v in enumerate(values))
    label = (f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end" class="tick">'
             f'{escape(x_label)}</text>') if x_label else ""
    return _svg(title, [_axis(), _top(top_label), f'<polyline points="{pts}" class="line"/>',
                        label])


def share_bar(parts: Sequence[tuple[str, int]], *, title: str) -> str:
    """One horizontal bar split into the parts' shares (e.g. the genesis allocation)."""
    total = sum(v for _, v in parts) or 1
    x, shapes = float(PAD), []
    for i, (name, v) in enumerate(parts):
        w = (WIDTH - 2 * PAD) * v / total
        shapes.append(f'<rect x="{x:.1f}" y="40" width="{w:.1f}" height="60" '
                      f'class="part part{i % 6}"><title>{escape(name)}: '
                      f'{100 * v / total:.1f}%</title></rect>')
        if w > 60:
            shapes.append(f'<text x="{x + w / 2:.1f}" y="125" text-anchor="middle" '
                          f'class="tick">{escape(name)} {100 * v / total:.0f}%</text>')
        x += w
    return _svg(title, shapes, height=150)


def _top(label: str) -> str:
    if not label:
        return ""
    return (f'<line x1="{PAD}" y1="{PAD}" x2="{WIDTH - PAD}" y2="{PAD}" class="grid"/>'
            f'<text x="{PAD}" y="{PAD - 6}" class="tick">{escape(label)}</text>')


def _axis() -> str:
    return (f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
            f'class="axis"/>')


def _svg(title: str, shapes: Sequence[str], height: int = HEIGHT) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height}" role="img" class="chart" '
            f'preserveAspectRatio="xMidYMid meet"><title>{escape(title)}</title>'
            + "".join(shapes) + "</svg>")
