"""HTML and SVG of the ``skal label`` page, rendered on the server.

The page template (``templates/page.html``) is filled with :class:`string.Template`
(no template engine needed); the learning curve is a small inline SVG.
"""

import html
import json
from importlib import resources
from string import Template
from urllib.parse import quote

__all__ = ["curve_svg", "key_for", "page_html", "tile_html"]


def key_for(i):
    """Keyboard key of the ``i``-th class: 1..9, then 0, then none.

    Examples
    --------
    >>> [key_for(i) for i in (0, 8, 9, 10)]
    ['1', '9', '0', '']
    """
    return str(i + 1) if i < 9 else ("0" if i == 9 else "")


def _template(name):
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def image_url(item_id):
    return "/image/" + quote(item_id, safe="/")


def tile_html(item_id):
    e = html.escape(item_id)
    return (f'<figure class="tile" data-id="{e}"><img src="{html.escape(image_url(item_id))}" '
            f'alt="{e}" loading="eager"><figcaption>{e}</figcaption></figure>')


def curve_svg(rounds, width=320, height=180):
    """The learning curve (CV accuracy vs labels) as an SVG string.

    Examples
    --------
    >>> svg = curve_svg([{"n_labeled": 10, "cv_accuracy": 0.5},
    ...                  {"n_labeled": 20, "cv_accuracy": 0.7}])
    >>> svg.startswith("<svg") and "polyline" in svg
    True
    """
    pts = [(r["n_labeled"], r["cv_accuracy"]) for r in rounds if r.get("cv_accuracy") is not None]
    pad_l, pad_r, pad_t, pad_b = 36, 10, 10, 28
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="learning curve">'),
           f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>']
    for acc in (0.0, 0.5, 1.0):
        y = pad_t + h * (1 - acc)
        out.append(f'<text x="{pad_l - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
                   f'{acc:.1f}</text>')
    out.append(f'<text x="{pad_l + w / 2:.1f}" y="{height - 4}" font-size="10" '
               'text-anchor="middle">labels (CV accuracy on the labeled set)</text>')
    if not pts:
        out.append(f'<text x="{pad_l + w / 2:.1f}" y="{pad_t + h / 2:.1f}" font-size="11" '
                   'text-anchor="middle" fill="#888">no estimate yet</text>')
    else:
        lo, hi = pts[0][0], max(p[0] for p in pts)
        span = (hi - lo) or 1

        def xy(n, a):
            return pad_l + w * (n - lo) / span if hi > lo else pad_l + w / 2, pad_t + h * (1 - a)

        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(n, a) for n, a in pts))
        out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{coords}"/>')
        for n, a in pts:
            x, y = xy(n, a)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1f77b4">'
                       f'<title>{n} labels: {a:.3f}</title></circle>')
        out.append(f'<text x="{pad_l}" y="{height - 16}" font-size="10">{lo}</text>')
        out.append(f'<text x="{pad_l + w}" y="{height - 16}" font-size="10" '
                   f'text-anchor="end">{hi}</text>')
    out.append("</svg>")
    return "".join(out)


def _script_json(value):
    # Script content is raw text: only "</" could end it early.
    return json.dumps(value).replace("</", "<\\/")


def page_html(*, title, classes, batch, status):
    """The whole page: class buttons, the batch grid, progress, curve, recent labels."""
    buttons = "".join(
        f'<button type="button" class="cls" data-label="{html.escape(c)}" '
        f'data-key="{key_for(i)}"><kbd>{key_for(i)}</kbd> {html.escape(c)}</button>'
        for i, c in enumerate(classes)
    )
    tiles = "".join(tile_html(i["id"]) for i in batch["items"]) or \
        '<p class="empty">Preparing the next batch&hellip;</p>'
    return Template(_template("page.html")).substitute(
        title=html.escape(title),
        buttons=buttons,
        tiles=tiles,
        curve=curve_svg(status["curve"]),
        generation=str(batch["generation"]),
        # The first status is embedded so the side panel renders without a request.
        status_json=_script_json(status),
        classes_json=_script_json(list(classes)),
    )
