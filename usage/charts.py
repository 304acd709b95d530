"""Server-side SVG charts (pygal) of analytics `Series`, readable without JavaScript.

pygal's interactive tooltips need its script from a CDN; instead every bar gets an SVG <title>
("sent · 2026-11-20: 7"), which browsers show on hover with no script, values are printed on the
bars when there is room, and the table under each chart carries the same numbers. The embedded
config <script> and the hidden tooltip group are removed, and the chart's <style> carries the
page's CSP nonce so that the dashboard can forbid inline styles and scripts.
"""

import re

import pygal
from lxml import etree
from pygal.style import Style

from usage.analytics import Series

SVG_NS = "http://www.w3.org/2000/svg"
_STYLE = Style(
    background="transparent",
    plot_background="#ffffff",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#2e7d32", "#1565c0", "#f9a825", "#6a1b9a", "#c62828", "#00838f", "#ef6c00"),
    value_font_size=11,
    legend_font_size=13,
    label_font_size=11,
    major_label_font_size=11,
)
# Each outcome keeps its colour in every chart (failed is red, suppressed orange).
_OUTCOME_COLORS = {
    "sent": "#2e7d32",
    "suppressed": "#ef6c00",
    "replayed": "#1565c0",
    "rejected": "#f9a825",
    "rate-limited": "#6a1b9a",
    "failed": "#c62828",
}
# Above this many bars the printed values collide; the <title>s and the table still have them.
_MAX_PRINTED_BARS = 14
# At most this many x labels are printed (every nth bar's), so rotated dates never overlap.
_MAX_X_LABELS = 10
# What XML 1.0 cannot carry (lxml refuses it). Key names are checked at creation, but a row
# stored before that may hold a control character: it shows as U+FFFD instead of failing the
# page for the whole organization.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _count_ticks(top: int) -> list[int]:
    """Whole-number y labels from 0 past `top`, at most about 6: counts have no fractions
    (pygal's own ticks for a top of 3 are 0, 0.8, 1.6, 2.4)."""
    magnitude = 1
    while True:
        step = next((c * magnitude for c in (1, 2, 5) if top <= c * magnitude * 5), None)
        if step is not None:
            break
        magnitude *= 10
    ticks = list(range(0, top + step, step))
    return ticks if len(ticks) > 1 else [0, 1]


def render(series: Series, *, nonce: str = "", height: int = 320, title: bool = True) -> str:
    """The series as a stacked bar chart: one inline <svg> element as a string."""
    labels = [_xml_text(label) for label in series.labels]
    style = _STYLE
    if set(series.rows) <= set(_OUTCOME_COLORS):
        style = Style(**{**_STYLE.to_dict(), "colors": [_OUTCOME_COLORS[n] for n in series.rows]})
    chart = pygal.StackedBar(
        js=[],
        css=["file://style.css", "file://graph.css"],
        style=style,
        disable_xml_declaration=True,
        width=900,
        height=height,
        title=_xml_text(series.title) if title else None,
        legend_at_bottom=True,
        print_values=len(labels) <= _MAX_PRINTED_BARS,
        print_zeroes=False,
        x_label_rotation=-45 if len(labels) > _MAX_PRINTED_BARS else 0,
        show_minor_x_labels=len(labels) <= _MAX_X_LABELS,
        x_labels_major_every=max(1, -(-len(labels) // _MAX_X_LABELS)),
        truncate_label=-1,
        min_scale=2,
        max_scale=6,
        no_data_text="No data",
    )
    chart.x_labels = labels
    if series.rows:  # without any, pygal draws "No data" and no axis
        stacked = [sum(column) for column in zip(*series.rows.values(), strict=True)]
        chart.y_labels = _count_ticks(max(stacked, default=0))
    for name, values in series.rows.items():
        chart.add(_xml_text(name), values)
    return _accessible(chart.render(is_unicode=True), series, labels, nonce)


def _accessible(svg: str, series: Series, labels: list[str], nonce: str) -> str:
    root = etree.fromstring(svg.encode())
    for element in root.iter(f"{{{SVG_NS}}}script"):
        element.getparent().remove(element)
    for element in list(root.iter(f"{{{SVG_NS}}}g")):
        if "tooltip" in (element.get("class") or "").split():
            element.getparent().remove(element)
    for element in root.iter(f"{{{SVG_NS}}}style"):
        if nonce:
            element.set("nonce", nonce)
    names = list(series.rows)
    for group in root.iter(f"{{{SVG_NS}}}g"):
        classes = (group.get("class") or "").split()
        if "series" not in classes:
            continue
        serie = next((c for c in classes if c.startswith("serie-")), None)
        if serie is None:
            continue
        name = names[int(serie.removeprefix("serie-"))]
        bars = [g for g in group.iter(f"{{{SVG_NS}}}g") if g.get("class") == "bar"]
        for i, bar in enumerate(bars):
            title = etree.Element(f"{{{SVG_NS}}}title")
            title.text = f"{_xml_text(name)} · {labels[i]}: {series.rows[name][i]}"
            bar.insert(0, title)
    root.set("role", "img")
    root.set("aria-label", _xml_text(series.title))
    return etree.tostring(root, encoding="unicode")
