"""HTML mail made safe to display in the agent page, by nh3 (ammonia).

An allow-list, not a block-list: basic formatting, tables, links and images
stay; script, style, iframe, object, embed, form and every other tag go
(script and style with their content); ``on*`` handlers and any attribute
not listed go; URLs must be http(s), mailto, tel or cid (inline parts, for
the web layer to rewrite). ``data:`` is refused except ``data:image/...``
(raster formats only, no SVG) as an ``img`` source when allowed. Links get
``target="_blank"`` and ``rel="noopener noreferrer"``; inline styles keep
only harmless properties (no positioning, no url() backgrounds).
"""

from __future__ import annotations

import functools
import re

import nh3

_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption",
        "center", "cite", "code", "col", "colgroup", "dd", "del", "div", "dl", "dt", "em",
        "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong",
        "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
    }
)  # fmt: skip
_CLEAN_CONTENT_TAGS = frozenset({"script", "style", "title", "noscript", "template"})
_COMMON_ATTRIBUTES = frozenset({"align", "dir", "lang", "style", "title", "valign"})
_ATTRIBUTES = {
    "*": _COMMON_ATTRIBUTES,
    "a": frozenset({"href", "name"}),
    "img": frozenset({"src", "alt", "width", "height", "border"}),
    "font": frozenset({"color", "face", "size"}),
    "table": frozenset({"border", "cellpadding", "cellspacing", "width", "bgcolor"}),
    "td": frozenset({"colspan", "rowspan", "width", "height", "bgcolor", "nowrap"}),
    "th": frozenset({"colspan", "rowspan", "width", "height", "bgcolor", "nowrap"}),
    "tr": frozenset({"bgcolor"}),
    "col": frozenset({"span", "width"}),
    "ol": frozenset({"start", "type"}),
    "blockquote": frozenset({"cite"}),
}
_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
        "line-height", "letter-spacing", "white-space", "vertical-align", "width", "height",
        "max-width", "min-width", "margin", "margin-top", "margin-right", "margin-bottom",
        "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
        "padding-left", "border", "border-top", "border-right", "border-bottom",
        "border-left", "border-color", "border-style", "border-width", "border-collapse",
        "border-spacing", "border-radius", "list-style-type",
    }
)  # fmt: skip
_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid", "data"})
_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpe?g|webp|bmp);", re.IGNORECASE)


def sanitize_html(html: str, *, allow_data_images: bool = True) -> str:
    """Return ``html`` reduced to safe markup for display in a browser."""
    return _cleaner(allow_data_images).clean(html)


@functools.cache
def _cleaner(allow_data_images: bool) -> nh3.Cleaner:
    def keep_attribute(tag: str, attribute: str, value: str) -> str | None:
        if not value.strip().lower().startswith("data:"):
            return value
        if allow_data_images and tag == "img" and attribute == "src":
            return value if _DATA_IMAGE.match(value.strip()) else None
        return None

    return nh3.Cleaner(
        tags=set(_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=keep_attribute,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=set(_URL_SCHEMES),
        filter_style_properties=set(_STYLE_PROPERTIES),
    )
