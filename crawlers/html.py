"""Images, links and language of an HTML page, parsed with selectolax (lexbor).

`extract` never raises on malformed markup: lexbor builds a tree for any input, the way a
browser does. Bytes are decoded by a byte-order mark, else the HTTP charset, else a
`<meta charset>` / `http-equiv` declaration in the first 4 KiB, else UTF-8 with
replacement characters. Encoding labels mean what the WHATWG Encoding Standard says
(`iso-8859-1`, `latin1` and `us-ascii` are windows-1252, `gb2312` is gb18030...).

Its work is linear in the page: lexbor's tree building costs the depth of the open
elements per tag, so elements nested deeper than `MAX_DEPTH` (512, Chromium's limit) are
flattened before parsing: their start and end tags are dropped, their content (images,
links, text) stays, held by the element at the limit.

Each `<img>` gives at most one `ImageRef`. Its URL is the largest `data-srcset`/`srcset`
candidate, else a lazy-loading attribute (`data-src`, `data-original`, `data-lazy-src`),
else `src`, else (an `<img>` in a `<picture>` with only a placeholder) the largest
candidate of the first `<source>` srcset that has one; `data:` URIs and non-http(s)
schemes are skipped. Declared `width`/`height` are read as browsers read dimensions: leading
digits ("100", "100px" are 100), nothing for a percentage or no digits. Its alt is the attribute as
written with entities decoded and ASCII whitespace collapsed; an `<img>` without alt gives
alt "" (still a candidate: curation drops it with a reason).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

from crawlers.urls import InvalidURLError, ReferenceResolver

LAZY_SRC_ATTRS = ("data-src", "data-original", "data-lazy-src")
LAZY_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset")
HTML_TYPES = ("text/html", "application/xhtml+xml")
# robots <meta> directives that opt a page's images out of collection
IMAGE_OPT_OUT = frozenset({"noai", "noimageai", "noimageindex"})

_WHITESPACE = re.compile(r"[ \t\n\r\f]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_DIMENSION = re.compile(r"[ \t\n\r\f]*([0-9]+)(?:\.[0-9]*)?(%?)")
MAX_DIMENSION = 2**31 - 1  # an int32 column
# WHATWG Encoding Standard labels whose decoder is not the Python codec of that name
_WHATWG_CODECS = {
    "iso8859-1": "cp1252",  # latin1, iso-8859-1, l1...
    "ascii": "cp1252",  # us-ascii
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class ImageRef:
    """One `<img>` on a page: absolute image URL and its alt text."""

    url: str
    alt: str
    has_alt: bool = True  # False when the tag had no alt attribute at all
    width: int | None = None  # declared width/height attributes, when numeric
    height: int | None = None
    title: str | None = None  # the `title` attribute (MetaCLIP keeps it), when not blank
    image_title: str | None = None  # the `data-image-title` attribute, when not blank


@dataclass
class PageContent:
    """What a page offers the crawler."""

    url: str  # the URL relative references resolve against (after `<base href>`)
    images: list[ImageRef] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    lang: str | None = None
    robots: frozenset[str] = frozenset()  # directives of <meta name="robots">, lower-case
    images_skipped: int = 0  # <img> tags with no usable http(s) URL (data:, missing...)


def is_html(content_type: str | None, body: bytes = b"") -> bool:
    """True for text/html and application/xhtml+xml, or markup-looking bodies of no type."""
    if content_type:
        return content_type.split(";")[0].strip().lower() in HTML_TYPES
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def extract(
    html: bytes, page_url: str, content_type: str | None = None, *, links: bool = True
) -> PageContent:
    """Parse a page: images (with alt), followable links (unless `links` is False, for
    readers that never follow them), declared language."""
    tree = LexborHTMLParser(cap_nesting(decode_html(html, content_type)))
    base = base_url(tree, page_url)
    resolver = ReferenceResolver(base)
    content = PageContent(url=base, lang=page_language(tree))
    content.robots = robots_directives(tree)
    for node in tree.css("img"):
        ref = image_ref(node, resolver)
        if ref is None:
            content.images_skipped += 1
        else:
            content.images.append(ref)
    if links and "nofollow" not in content.robots and "none" not in content.robots:
        content.links = page_links(tree, resolver)
    return content


# ---------------------------------------------------------------- nesting

# `<`, then a comment (swallowed whole) or a tag name with its `/` if it is an end tag
_TAG = re.compile(r"<(?:!--.*?(?:-->|\Z)|(/?[A-Za-z][^\t\n\f\r />]*))", re.S)
MAX_DEPTH = 512
# elements whose content is not markup (or is foreign markup): skipped to their end tag
_OPAQUE = frozenset(
    ["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "svg", "math"]
)
# void elements, the ones a sibling closes (`<a>` too: an `<a>` closes the open one), the
# singletons: never counted as open, never dropped (a link keeps its href at any depth)
_UNCOUNTED = frozenset(
    [
        "a",
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
        "frame",
        "basefont",
        "bgsound",
        "image",
        "p",
        "li",
        "dt",
        "dd",
        "option",
        "optgroup",
        "tr",
        "td",
        "th",
        "tbody",
        "thead",
        "tfoot",
        "rb",
        "rt",
        "rp",
        "rtc",
        "colgroup",
        "caption",
        "html",
        "head",
        "body",
    ]
)
_UNCOUNTED_TOKENS = _UNCOUNTED | {"/" + name for name in _UNCOUNTED}
_END_TAG_REACH = 64  # how far down the open elements an end tag looks for its start tag


def cap_nesting(text: str, max_depth: int = MAX_DEPTH) -> str:
    """`text` with the start and end tags of elements nested deeper than `max_depth`
    removed; `text` itself (the same object) when nothing is that deep."""
    if text.count("<") <= max_depth:
        return text
    tokens = _TAG.findall(text)
    if next(deep_tags(tokens, max_depth), None) is None:
        return text
    drop = set(deep_tags(tokens, max_depth))
    pieces, last = [], 0
    for index, match in enumerate(_TAG.finditer(text)):
        if index in drop:
            end = text.find(">", match.end())
            pieces.append(text[last : match.start()])
            last = len(text) if end < 0 else end + 1
    pieces.append(text[last:])
    return "".join(pieces)


def deep_tags(tokens: list[str], max_depth: int) -> Iterator[int]:
    """Indices of the tag tokens (`name` or `/name`, "" for a comment) that open or close an
    element deeper than `max_depth`, tracking the open elements the way a parser does,
    roughly: an end tag closes the nearest open element of its name, if one is near."""
    stack: list[str] = []
    opaque = ""
    for index, token in enumerate(tokens):
        if not token or token in _UNCOUNTED_TOKENS:
            continue
        name = token.lower().lstrip("/")
        if opaque:
            opaque = "" if token[0] == "/" and name == opaque else opaque
        elif token[0] == "/":
            at = open_element(stack, name)
            if at is not None:
                del stack[at:]
                if at >= max_depth:
                    yield index
        elif name in _OPAQUE:
            opaque = name
        elif name not in _UNCOUNTED:
            if len(stack) >= max_depth:
                yield index
            stack.append(name)


def open_element(stack: list[str], name: str) -> int | None:
    """Position of the nearest open `name` among the top `_END_TAG_REACH`, else None."""
    if stack and stack[-1] == name:
        return len(stack) - 1
    top = stack[-_END_TAG_REACH:][::-1]
    return len(stack) - 1 - top.index(name) if name in top else None


# ---------------------------------------------------------------- decoding


def charset_from_content_type(content_type: str | None) -> str | None:
    """The `charset=` parameter of a Content-Type header, if present and known to Python."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return known_codec(value.strip().strip("\"'"))
    return None


def known_codec(name: str) -> str | None:
    """The Python codec that decodes the encoding label `name` as browsers do, or None."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return _WHATWG_CODECS.get(codec, codec)


def decode_html(html: bytes, content_type: str | None = None) -> str:
    """Page bytes as text: a byte-order mark wins (as in browsers), then the HTTP charset,
    then a <meta> charset in the first 4 KiB, then UTF-8; bad bytes become U+FFFD."""
    for bom, bom_encoding in _BOMS:
        if html.startswith(bom):
            return html[len(bom) :].decode(bom_encoding, errors="replace")
    encoding = charset_from_content_type(content_type)
    if encoding is None:
        match = _META_CHARSET.search(html[:4096])
        encoding = known_codec(match.group(1).decode("ascii")) if match else None
    if encoding is None or encoding.startswith("utf-16"):
        encoding = "utf-8"  # bytes without a BOM that parse as ASCII markup are not UTF-16
    return html.decode(encoding, errors="replace")


# ---------------------------------------------------------------- page-level facts


def base_url(tree: LexborHTMLParser, page_url: str) -> str:
    """The first `<base href>` resolved against the page URL, else the page URL."""
    node = tree.css_first("base[href]")
    href = (node.attributes.get("href") or "").strip() if node is not None else ""
    if not href:
        return page_url
    resolved = absolute_url(href, page_url)
    return resolved or page_url


def page_language(tree: LexborHTMLParser) -> str | None:
    """`<html lang>` (or `xml:lang`), else `<meta http-equiv=content-language>`; None if unset."""
    root = tree.css_first("html")
    if root is not None:
        for attr in ("lang", "xml:lang"):
            value = (root.attributes.get(attr) or "").strip()
            if value:
                return value
    for node in tree.css("meta[http-equiv]"):
        if (node.attributes.get("http-equiv") or "").strip().lower() == "content-language":
            value = (node.attributes.get("content") or "").split(",")[0].strip()
            if value:
                return value
    return None


def robots_directives(tree: LexborHTMLParser) -> frozenset[str]:
    """Directives of `<meta name="robots" content=...>`, lower-cased."""
    found: set[str] = set()
    for node in tree.css("meta[name]"):
        if (node.attributes.get("name") or "").strip().lower() == "robots":
            content = (node.attributes.get("content") or "").lower()
            found.update(t for t in re.split(r"[,\s]+", content) if t)
    return frozenset(found)


def page_links(tree: LexborHTMLParser, resolver: ReferenceResolver) -> list[str]:
    """Absolute http(s) URLs of `<a href>` without rel=nofollow, in page order."""
    links = []
    for node in tree.css("a[href]"):
        attrs = node.attributes
        rel = attrs.get("rel")
        if rel and "nofollow" in rel.lower().split():
            continue
        url = absolute_url(attrs.get("href") or "", resolver)
        if url is not None:
            links.append(url)
    return links


# ---------------------------------------------------------------- images


def image_ref(node: LexborNode, resolver: ReferenceResolver) -> ImageRef | None:
    """The `ImageRef` of one `<img>` node, or None when it has no usable URL."""
    attrs = node.attributes
    url = first_url(image_url_candidates(attrs), resolver)
    if url is None:
        url = first_url(picture_candidates(node), resolver)
    if url is None:
        return None
    raw_alt = attrs.get("alt")
    alt = _WHITESPACE.sub(" ", raw_alt).strip(" ") if raw_alt else ""
    return ImageRef(
        url=url,
        alt=alt,
        has_alt="alt" in attrs,
        width=_dimension(attrs.get("width")),
        height=_dimension(attrs.get("height")),
        title=_attribute_text(attrs.get("title")),
        image_title=_attribute_text(attrs.get("data-image-title")),
    )


def _attribute_text(value: str | None) -> str | None:
    """An attribute's text with whitespace runs collapsed; None when absent or blank."""
    text = _WHITESPACE.sub(" ", value).strip(" ") if value else ""
    return text or None


def first_url(candidates: list[str], resolver: ReferenceResolver) -> str | None:
    """The first candidate that resolves to an http(s) URL."""
    for candidate in candidates:
        url = absolute_url(candidate, resolver)
        if url is not None:
            return url
    return None


def picture_candidates(node: LexborNode) -> list[str]:
    """The largest srcset candidate of each `<source>` of the `<picture>` holding `node`."""
    parent = node.parent
    if parent is None or parent.tag != "picture":
        return []
    candidates = []
    for source in parent.iter():
        if source.tag == "source":
            for name in (*LAZY_SRCSET_ATTRS, "srcset"):
                largest = largest_srcset_candidate(source.attributes.get(name) or "")
                if largest:
                    candidates.append(largest)
    return candidates


def image_url_candidates(attrs: dict[str, str | None]) -> list[str]:
    """Image URLs of an `<img>` in order of preference (largest srcset, lazy, then src)."""
    candidates = []
    for name in (*LAZY_SRCSET_ATTRS, "srcset"):
        largest = largest_srcset_candidate(attrs.get(name) or "")
        if largest:
            candidates.append(largest)
    candidates += [attrs.get(name) or "" for name in (*LAZY_SRC_ATTRS, "src")]
    return [c.strip() for c in candidates if c and c.strip()]


def parse_srcset(srcset: str) -> list[tuple[str, float, float]]:
    """Candidates of a srcset as (url, width descriptor or 0, density or 1), per the HTML
    spec: a URL runs to whitespace, trailing commas end it, descriptors run to a comma."""
    result: list[tuple[str, float, float]] = []
    pos, size = 0, len(srcset)
    while pos < size:
        while pos < size and (srcset[pos].isspace() or srcset[pos] == ","):
            pos += 1
        start = pos
        while pos < size and not srcset[pos].isspace():
            pos += 1
        url = srcset[start:pos]
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            end = srcset.find(",", pos)
            end = size if end < 0 else end
            descriptors, pos = srcset[pos:end], end + 1
        if url:
            result.append((url, *_descriptor_values(descriptors)))
    return result


def _descriptor_values(descriptors: str) -> tuple[float, float]:
    width, density = 0.0, 1.0
    for token in descriptors.split():
        try:
            if token.endswith("w"):
                width = float(token[:-1])
            elif token.endswith("x"):
                density = float(token[:-1])
        except ValueError:
            continue
    return width, density


def largest_srcset_candidate(srcset: str) -> str | None:
    """The srcset URL with the largest width descriptor, else the largest density."""
    candidates = [c for c in parse_srcset(srcset) if not c[0].lower().startswith("data:")]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[1], c[2]))[0]


def absolute_url(reference: str, base: str | ReferenceResolver) -> str | None:
    """`reference` resolved against `base` and normalised; None unless it is http(s)."""
    reference = reference.strip()
    if not reference or reference[:11].lower().startswith(("data:", "javascript:", "mailto:")):
        return None
    resolver = ReferenceResolver(base) if isinstance(base, str) else base
    try:
        return resolver.resolve(reference)
    except (InvalidURLError, ValueError):
        return None


def _dimension(value: str | None) -> int | None:
    """A declared width or height as browsers read it: leading digits after whitespace
    ("100", "100px", "100.5" give 100); None for a percentage, no digits, or over int32."""
    match = _DIMENSION.match(value or "")
    if match is None or match.group(2):
        return None
    digits = match.group(1).lstrip("0") or "0"
    return int(digits) if len(digits) <= 10 and int(digits) <= MAX_DIMENSION else None
