"""The sandbox web as pure data: pages, images, robots.txt and the routing table.

`SandboxSite(config)` decides everything from the seed and does no I/O: which pages each
host serves and what they link to, which `<img>` tags they hold with which alt text, what
every URL answers (a page, image bytes, an error, a redirect, a slow or flaky response),
and the ground truth of what each image is. Places are `(host, path)`; the server knows the
ports and turns them into URLs.

What is on it (each fault in a handful of places, placed by hashing slots with the seed):
  - hosts with pages linked in a chain, across hosts and at random, all reachable from
    host 0's `/`; every image a concept picture with a Zipf-drawn concept and an English
    caption ("good"), except the slots taken by the `PLAN` below;
  - robots.txt everywhere; one host disallows `/private/` (whose pages hold good-looking
    images), one host asks for a `Crawl-delay` and has few pages;
  - page faults: 404, 500, 503-then-200, slow, 301/302 redirects, a redirect loop, a
    windows-1252 page, a PDF and a zip, and an endless calendar trap.
"""

from __future__ import annotations

import calendar
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from core.config import SandboxConfig
from sandbox.concepts import FOREIGN_ALTS, JUNK_ALTS, SHORT_ALTS, make_caption, sample_concept
from sandbox.render import ImageSpec, placeholder_gif
from sandbox.seeding import derive_random, hash_hex, hash_int, hash_unit

HostPath = tuple[int, str]
Slot = tuple[int, str, int]  # host, page path, position of the <img> on the page

CRAWL_DELAY = 0.5  # seconds, asked by the delay host's robots.txt
DELAY_HOST_PAGES = 8  # the delay host is small so a polite crawl stays quick
PRIVATE_PREFIX = "/private/"
TRAP_PREFIX = "/calendar/"
TRAP_ENTRY = "/calendar/2026/11"
PLACEHOLDER_PATH = "/static/blank.gif"
SECTIONS = ("gallery", "blog", "shop", "art", "kids", "news")
SITE_NAMES = ("Shape Gallery", "Colour Blog", "Craft Corner", "Paper Shapes", "Art Class")

# kind, number of items, slots per item: the fault images placed among the page slots.
PLAN: tuple[tuple[str, int, int], ...] = (
    ("junk_alt", len(JUNK_ALTS), 1),
    ("no_alt", 1, 1),
    ("short_alt", len(SHORT_ALTS), 1),
    ("non_english", len(FOREIGN_ALTS), 1),
    ("duplicate_url", 2, 3),  # the same (alt, URL) on three pages
    ("duplicate_bytes", 2, 4),  # the same bytes at four URLs, four captions
    ("near_duplicate", 3, 2),  # a picture and its re-encoded, resized copy
    ("small", 3, 1),
    ("aspect", 4, 1),
    ("broken", 3, 1),
    ("truncated", 2, 1),
    ("wrong_type", 4, 1),
    ("http_error", 6, 1),
    ("flaky", 3, 1),
    ("noai", 4, 1),
    ("bomb", 2, 1),
    ("lazy", 4, 1),
    ("redirect", 4, 1),
    ("redirect_loop", 2, 1),
    ("slow", 3, 1),
)
SMALL_SIZES = ((120, 90), (150, 100), (160, 120))
ASPECT_SIZES = ((900, 200), (200, 900), (800, 240), (240, 800))
NOAI_TAGS = ("noai", "noai", "noimageai", "noindex, noai")
BROKEN_VARIANTS = ("garbage", "jpeg_garbage", "empty")
NON_UTF8_CAPTIONS = (
    "a red circle painted on the wall of the old café in town",
    "a blue star above the door of the café — seen from the street",
)
FILLER = (
    "We collect simple shapes in bright colours and share the best ones here.",
    "Every picture on this page was made by our readers.",
    "Shapes and colours are the first things children learn to name.",
    "Scroll down to see more pictures from this week.",
    "Send us your own drawings and we will add them to the gallery.",
    "These pictures were taken in the afternoon light.",
)
HTML_AT_IMAGE_URL = b"<!DOCTYPE html><html><body><p>This image is not available.</p></body></html>"
PDF_BODY = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
ZIP_BODY = b"PK\x05\x06" + b"\x00" * 18  # an empty zip archive


@dataclass(frozen=True)
class ImageRef:
    """One `<img>` tag: where its image lives, its alt (None: no alt attribute), its style."""

    target: HostPath
    alt: str | None
    style: str = "plain"  # plain | lazy (data-src, placeholder src) | srcset
    srcset: tuple[tuple[int, HostPath], ...] = ()  # (width, place) for style srcset


@dataclass(frozen=True)
class PageSpec:
    host: int
    path: str
    title: str
    images: tuple[ImageRef, ...] = ()
    links: tuple[HostPath, ...] = ()
    encoding: str = "utf-8"


@dataclass(frozen=True)
class Route:
    """What one place answers. `kind`: page | image | body | status | redirect."""

    kind: str
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    page: PageSpec | None = None
    image: ImageSpec | None = None
    body: bytes = b""
    location: HostPath | None = None
    flaky: bool = False  # the first request gets 503, later ones the real answer
    slow: bool = False  # answered after `slow_seconds`


@dataclass(frozen=True)
class ImageFact:
    """The truth about one image place that appears in some page."""

    target: HostPath
    kind: str
    caption: str | None
    concept: str | None


@dataclass(frozen=True)
class SandboxTruth:
    """What the sandbox holds, as full URLs, for tests to check a run against.

    `kinds` maps each image kind to the URLs written in pages; kinds are disjoint except
    that "broken" includes "truncated". "good" images pass every filter (English caption of
    more than two words, at least 200 px, aspect at most 3, over 5 KB, no opt-out), apart
    from balancing. `pages` maps page kinds ("ok", "flaky", "slow", "robots_disallowed",
    "redirect", "redirect_loop", "http_error", "non_html", "non_utf8", "trap") to URLs.
    """

    seed_urls: tuple[str, ...]
    kinds: dict[str, frozenset[str]]
    captions: dict[str, str]  # image URL -> alt text as written (duplicates share one)
    concepts: dict[str, str]  # image URL -> concept its pixels show
    groups: dict[str, tuple[frozenset[str], ...]]  # duplicate_bytes / near_duplicate sets
    pages: dict[str, frozenset[str]]
    redirects: dict[str, str]  # URL -> Location it answers with
    trap_prefixes: tuple[str, ...]
    robots: dict[str, str] = field(default_factory=dict)  # base URL -> robots.txt text

    @property
    def good(self) -> dict[str, str]:
        """Good image URL -> its caption."""
        return {url: self.captions[url] for url in self.kinds.get("good", frozenset())}

    @property
    def disallowed_pages(self) -> frozenset[str]:
        return self.pages.get("robots_disallowed", frozenset())

    @property
    def trap_pages(self) -> frozenset[str]:
        """The trap pages linked from ordinary pages (the trap itself never ends)."""
        return self.pages.get("trap", frozenset())

    def is_trap(self, url: str) -> bool:
        return url.startswith(self.trap_prefixes)

    def kind_of(self, url: str) -> str | None:
        """The image kind of `url` ("truncated" rather than "broken"), or None."""
        found = [k for k, urls in self.kinds.items() if url in urls and k != "broken"]
        return found[0] if found else ("broken" if url in self.kinds.get("broken", ()) else None)


class SandboxSite:
    """The deterministic generator of the sandbox web (no I/O; see module docstring)."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.seed = config.seed
        hosts = config.hosts
        self.robots_host = 1 % hosts
        self.trap_host = 2 % hosts
        self.delay_host: int | None = hosts - 1 if hosts >= 3 else None
        self.routes: dict[HostPath, Route] = {}
        self.facts: dict[HostPath, ImageFact] = {}
        self.groups: dict[str, list[tuple[HostPath, ...]]] = {"duplicate_bytes": []}
        self.groups["near_duplicate"] = []
        self.redirects: dict[HostPath, HostPath] = {}
        self.page_kinds: dict[str, set[HostPath]] = {}
        self.public = {h: self._public_paths(h) for h in range(hosts)}
        self.private = self._private_paths()
        self._images: dict[HostPath, list[ImageRef | None]] = {}
        self._build()

    # ------------------------------------------------------------------ layout

    def _page_count(self, host: int) -> int:
        count = self.config.pages_per_host
        return min(count, DELAY_HOST_PAGES) if host == self.delay_host else count

    def _public_paths(self, host: int) -> list[str]:
        count = self._page_count(host) - (self._private_count() if host == self.robots_host else 0)
        paths = ["/"]
        for i in range(1, max(count, 1)):
            section = SECTIONS[hash_int("section", host, i, self.seed) % len(SECTIONS)]
            paths.append(f"/{section}/{i:03d}.html")
        return paths

    def _private_count(self) -> int:
        return min(3, self.config.pages_per_host // 4)

    def _private_paths(self) -> list[str]:
        return [f"{PRIVATE_PREFIX}{i:03d}.html" for i in range(1, self._private_count() + 1)]

    def _build(self) -> None:
        slots = self._public_slots()
        for path in self.private:
            self._images[(self.robots_host, path)] = [None] * self.config.images_per_page
        self._place_plan(slots)
        for host, path in self._images:
            for position, ref in enumerate(self._images[(host, path)]):
                if ref is None:
                    self._build_good((host, path, position), private=path in self.private)
        self._build_pages()
        self._build_special_pages()
        self._build_robots()

    def _public_slots(self) -> list[Slot]:
        slots: list[Slot] = []
        for host, paths in self.public.items():
            for path in paths:
                self._images[(host, path)] = [None] * self.config.images_per_page
                slots += [(host, path, i) for i in range(self.config.images_per_page)]
        return sorted(slots, key=lambda s: hash_int("slot", *s, self.seed))

    def _place_plan(self, slots: list[Slot]) -> None:
        builders = self._builders()
        for kind, items, copies in PLAN:
            for item in range(items):
                chosen = _take_slots(slots, copies)
                if chosen is None:
                    return  # a small sandbox holds fewer faults
                builders[kind](chosen, item)

    def _builders(self) -> dict[str, Callable[[list[Slot], int], None]]:
        return {
            "junk_alt": lambda s, i: self._build_alt(s[0], "junk_alt", JUNK_ALTS[i]),
            "no_alt": lambda s, i: self._build_alt(s[0], "no_alt", None),
            "short_alt": lambda s, i: self._build_alt(s[0], "short_alt", SHORT_ALTS[i]),
            "non_english": lambda s, i: self._build_alt(s[0], "non_english", FOREIGN_ALTS[i][1]),
            "duplicate_url": self._build_duplicate_url,
            "duplicate_bytes": self._build_duplicate_bytes,
            "near_duplicate": self._build_near_duplicate,
            "small": lambda s, i: self._build_sized(s[0], "small", SMALL_SIZES[i % 3]),
            "aspect": lambda s, i: self._build_sized(s[0], "aspect", ASPECT_SIZES[i % 4]),
            "broken": self._build_broken,
            "truncated": lambda s, i: self._build_variant(s[0], "truncated", "truncated"),
            "wrong_type": self._build_wrong_type,
            "http_error": self._build_http_error,
            "flaky": lambda s, i: self._build_flagged(s[0], "flaky", flaky=True),
            "slow": lambda s, i: self._build_flagged(s[0], "slow", slow=True),
            "noai": self._build_noai,
            "bomb": lambda s, i: self._build_variant(s[0], "bomb", "bomb", ext="png"),
            "lazy": self._build_lazy,
            "redirect": self._build_redirect,
            "redirect_loop": self._build_redirect_loop,
        }

    # ------------------------------------------------------------------ images

    def _key(self, slot: Slot) -> str:
        return f"{slot[0]}{slot[1]}#{slot[2]}"

    def _target(self, slot: Slot, ext: str = "jpg", prefix: str = "/img/") -> HostPath:
        """A fresh image place for `slot`: its page's host, or now and then the next host."""
        host = slot[0]
        if hash_unit("cdn", *slot, self.seed) < 0.125:
            host = (host + 1) % self.config.hosts
        return host, f"{prefix}{hash_hex('image', *slot, prefix, self.seed)}.{ext}"

    def _spec(self, key: str, size: tuple[int, int] | None = None) -> ImageSpec:
        """A concept picture for `key`, at `size` or at a good size near `image_size`."""
        rng = derive_random("spec", key, self.seed)
        side = self.config.image_size
        width, height = size or rng.choice(
            ((side, side), (side * 5 // 4, side), (side, side * 5 // 4))
        )
        concept = sample_concept(key, self.seed)
        return ImageSpec(concept, key, width, height, quality=rng.randint(75, 92))

    def _caption(self, spec: ImageSpec) -> str:
        assert spec.concept is not None
        return make_caption(spec.concept, spec.key, self.seed, self.config.languages)

    def _route(self, target: HostPath, route: Route) -> None:
        if target in self.routes:
            raise RuntimeError(f"two routes for {target}")  # a hash collision: change names
        self.routes[target] = route

    def _serve(self, target: HostPath, route: Route, kind: str, caption: str | None) -> None:
        """Route `target` and record the truth about it as an image on some page."""
        self._route(target, route)
        spec = route.image
        concept = spec.concept.name if spec is not None and spec.concept is not None else None
        self.facts[target] = ImageFact(target, kind, caption, concept)

    def _serve_spec(
        self,
        target: HostPath,
        spec: ImageSpec,
        kind: str,
        caption: str | None,
        flags: tuple[bool, bool] = (False, False),
    ) -> None:
        """Serve `spec` at `target`; `flags` = (flaky, slow)."""
        route = Route(
            "image", content_type=spec.content_type, image=spec, flaky=flags[0], slow=flags[1]
        )
        self._serve(target, route, kind, caption)

    def _place(self, slot: Slot, ref: ImageRef) -> None:
        self._images[(slot[0], slot[1])][slot[2]] = ref

    def _build_good(self, slot: Slot, private: bool) -> None:
        spec = self._spec(self._key(slot))
        caption = self._caption(spec)
        target = self._target(slot)
        self._serve_spec(target, spec, "robots_disallowed" if private else "good", caption)
        self._place(slot, ImageRef(target, caption))

    def _build_alt(self, slot: Slot, kind: str, alt: str | None) -> None:
        target = self._target(slot)
        self._serve_spec(target, self._spec(self._key(slot)), kind, alt)
        self._place(slot, ImageRef(target, alt))

    def _build_sized(self, slot: Slot, kind: str, size: tuple[int, int]) -> None:
        spec = self._spec(self._key(slot), size)
        target, caption = self._target(slot), self._caption(spec)
        self._serve_spec(target, spec, kind, caption)
        self._place(slot, ImageRef(target, caption))

    def _build_flagged(
        self, slot: Slot, kind: str, flaky: bool = False, slow: bool = False
    ) -> None:
        spec = self._spec(self._key(slot))
        target, caption = self._target(slot), self._caption(spec)
        self._serve_spec(target, spec, kind, caption, (flaky, slow))
        self._place(slot, ImageRef(target, caption))

    def _build_variant(self, slot: Slot, kind: str, variant: str, ext: str = "jpg") -> None:
        spec = replace(self._spec(self._key(slot)), variant=variant)
        target, caption = self._target(slot, ext), self._caption(spec)
        self._serve_spec(target, spec, kind, caption)
        self._place(slot, ImageRef(target, caption))

    def _build_broken(self, slots: list[Slot], item: int) -> None:
        self._build_variant(slots[0], "broken", BROKEN_VARIANTS[item % len(BROKEN_VARIANTS)])

    def _build_duplicate_url(self, slots: list[Slot], item: int) -> None:
        spec = self._spec(self._key(slots[0]))
        target, caption = self._target(slots[0]), self._caption(spec)
        self._serve_spec(target, spec, "duplicate_url", caption)
        for slot in slots:
            self._place(slot, ImageRef(target, caption))

    def _build_duplicate_bytes(self, slots: list[Slot], item: int) -> None:
        spec = self._spec(self._key(slots[0]))
        group = []
        for index, slot in enumerate(slots):
            target = self._target(
                slot, prefix=("/img/", "/cdn/", "/media/", "/uploads/")[index % 4]
            )
            caption = make_caption(spec.concept, self._key(slot), self.seed, self.config.languages)  # type: ignore[arg-type]
            self._serve_spec(target, spec, "duplicate_bytes", caption)
            self._place(slot, ImageRef(target, caption))
            group.append(target)
        self.groups["duplicate_bytes"].append(tuple(group))

    def _build_near_duplicate(self, slots: list[Slot], item: int) -> None:
        original = self._spec(self._key(slots[0]))
        side = min(original.width, original.height)
        scale = 0.85 if side * 0.85 >= 200 else 1.0
        copy = replace(original, quality=40, variant="near_dup", scale=scale)
        group = []
        for slot, spec in zip(slots, (original, copy), strict=True):
            target = self._target(slot)
            caption = make_caption(spec.concept, self._key(slot), self.seed, self.config.languages)  # type: ignore[arg-type]
            self._serve_spec(target, spec, "near_duplicate", caption)
            self._place(slot, ImageRef(target, caption))
            group.append(target)
        self.groups["near_duplicate"].append(tuple(group))

    def _build_wrong_type(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        target, caption = self._target(slot), self._caption(spec)
        if item % 2 == 0:  # an HTML page at an image URL
            self._serve(target, Route("body", body=HTML_AT_IMAGE_URL), "wrong_type", caption)
        else:  # a real image labelled as HTML
            self._serve(target, Route("image", image=spec), "wrong_type", caption)
        self._place(slot, ImageRef(target, caption))

    def _build_http_error(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        target, caption = self._target(slot), self._caption(spec)
        status = 404 if item % 2 == 0 else 500
        self._serve(target, Route("status", status=status), "http_error", caption)
        self._place(slot, ImageRef(target, caption))

    def _build_noai(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        target, caption = self._target(slot), self._caption(spec)
        headers = (("X-Robots-Tag", NOAI_TAGS[item % len(NOAI_TAGS)]),)
        route = Route("image", content_type=spec.content_type, image=spec, headers=headers)
        self._serve(target, route, "noai", caption)
        self._place(slot, ImageRef(target, caption))

    def _build_lazy(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        caption = self._caption(spec)
        if item % 2 == 0:  # data-src with a placeholder src
            target = self._target(slot)
            self._serve_spec(target, spec, "lazy", caption)
            self._place(slot, ImageRef(target, caption, style="lazy"))
            placeholder = (slot[0], PLACEHOLDER_PATH)
            if placeholder not in self.routes:
                route = Route("body", content_type="image/gif", body=placeholder_gif())
                self._serve(placeholder, route, "placeholder", None)
            return
        widths = (spec.width, spec.width * 3 // 2, spec.width * 2)
        srcset = []
        for width in widths:
            host, path = self._target(slot)
            target = (host, path.replace(".jpg", f"-{width}w.jpg"))
            height = round(spec.height * width / spec.width)
            self._serve_spec(target, replace(spec, width=width, height=height), "lazy", caption)
            srcset.append((width, target))
        self._place(slot, ImageRef(srcset[0][1], caption, style="srcset", srcset=tuple(srcset)))

    def _build_redirect(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        caption = self._caption(spec)
        final_host, final_path = self._target(slot)
        if item == 1:  # one redirect crosses to another host
            final_host = (final_host + 1) % self.config.hosts
        self._route(
            (final_host, final_path), Route("image", content_type=spec.content_type, image=spec)
        )
        listed = self._target(slot, prefix="/r/")
        route = Route(
            "redirect", status=301 if item % 2 == 0 else 302, location=(final_host, final_path)
        )
        self._serve(listed, route, "redirect", caption)
        self.redirects[listed] = (final_host, final_path)
        self._place(slot, ImageRef(listed, caption))

    def _build_redirect_loop(self, slots: list[Slot], item: int) -> None:
        slot = slots[0]
        spec = self._spec(self._key(slot))
        caption = self._caption(spec)
        first = self._target(slot, prefix="/r/loop-a-")
        second = self._target(slot, prefix="/r/loop-b-")
        self._serve(first, Route("redirect", status=302, location=second), "redirect_loop", caption)
        self.routes[second] = Route("redirect", status=302, location=first)
        self.redirects[first], self.redirects[second] = second, first
        self._place(slot, ImageRef(first, caption))

    # ------------------------------------------------------------------ pages

    def _build_pages(self) -> None:
        flaky, slow = self._unreliable_pages()
        for (host, path), refs in self._images.items():
            images = tuple(ref for ref in refs if ref is not None)
            links = self._links(host, path)
            page = PageSpec(host, path, self._title(host, path), images, links)
            place = (host, path)
            self.routes[place] = Route("page", page=page, flaky=place in flaky, slow=place in slow)
            kind = (
                "robots_disallowed" if path in self.private and host == self.robots_host else "ok"
            )
            self._page_kind(kind, place)
        for place in flaky:
            self._page_kind("flaky", place)
        for place in slow:
            self._page_kind("slow", place)

    def _page_kind(self, kind: str, place: HostPath) -> None:
        self.page_kinds.setdefault(kind, set()).add(place)

    def _unreliable_pages(self) -> tuple[set[HostPath], set[HostPath]]:
        """Two flaky (503 first) and two slow pages, never roots, never on the delay host."""
        candidates = [
            (h, p) for h, paths in self.public.items() if h != self.delay_host for p in paths[1:]
        ]
        candidates.sort(key=lambda place: hash_int("unreliable", *place, self.seed))
        return set(candidates[:2]), set(candidates[2:4])

    def _title(self, host: int, path: str) -> str:
        site = SITE_NAMES[host % len(SITE_NAMES)]
        if path == "/":
            return f"{site}: home"
        return f"{site}: {path.strip('/').replace('/', ' ').removesuffix('.html')}"

    def _links(self, host: int, path: str) -> tuple[HostPath, ...]:
        rng = derive_random("links", host, path, self.seed)
        public = self.public[host]
        index = public.index(path) if path in public else 0
        links: list[HostPath] = [(host, public[(index + 1) % len(public)])]
        links += [(host, rng.choice(public)) for _ in range(3)]
        other = rng.randrange(self.config.hosts)
        links.append((other, rng.choice(self.public[other])))
        if path == "/":
            links += [(h, "/") for h in range(self.config.hosts) if h != host]
            links += self._special_links(host)
        links += [(host, p) for p in self._private_links(host, path)]
        return tuple(dict.fromkeys(place for place in links if place != (host, path)))

    def _private_links(self, host: int, path: str) -> list[str]:
        """Each private page is linked from two public pages of the robots host."""
        if host != self.robots_host or path in self.private:
            return []
        public = self.public[host]
        linked = []
        for number, private in enumerate(self.private):
            first = hash_int("private", number, self.seed) % len(public)
            if public.index(path) in (first, (first + 1) % len(public)):
                linked.append(private)
        return linked

    def _special_links(self, host: int) -> list[HostPath]:
        links: list[HostPath] = []
        if host == 0:
            links += [(0, p) for p in ("/legacy/catalogue.html", "/files/report.pdf")]
            links += [(0, p) for p in ("/files/archive.zip", "/loop/a.html", "/go/elsewhere")]
            links += [(0, "/missing.html")] + (
                [(0, "/old/first.html")] if len(self.public[0]) > 1 else []
            )
        if host == self.robots_host:
            links.append((host, "/oops.html"))
        if host == self.trap_host:
            links.append((host, TRAP_ENTRY))
        return links

    def _build_special_pages(self) -> None:
        self._add_special(0, "/missing.html", Route("status", status=404), "http_error")
        self._add_special(self.robots_host, "/oops.html", Route("status", status=500), "http_error")
        pdf = Route("body", content_type="application/pdf", body=PDF_BODY)
        self._add_special(0, "/files/report.pdf", pdf, "non_html")
        archive = Route("body", content_type="application/zip", body=ZIP_BODY)
        self._add_special(0, "/files/archive.zip", archive, "non_html")
        self._add_redirect((0, "/loop/a.html"), (0, "/loop/b.html"), 302, "redirect_loop")
        self._add_redirect((0, "/loop/b.html"), (0, "/loop/a.html"), 302, "redirect_loop")
        self._add_redirect((0, "/go/elsewhere"), (1 % self.config.hosts, "/"), 302, "redirect")
        if len(self.public[0]) > 1:
            self._add_redirect((0, "/old/first.html"), (0, self.public[0][1]), 301, "redirect")
        self._build_non_utf8_page()
        self._page_kind("trap", (self.trap_host, TRAP_ENTRY))

    def _add_special(self, host: int, path: str, route: Route, kind: str) -> None:
        self.routes[(host, path)] = route
        self._page_kind(kind, (host, path))

    def _add_redirect(self, source: HostPath, target: HostPath, status: int, kind: str) -> None:
        self._add_special(*source, Route("redirect", status=status, location=target), kind)
        self.redirects[source] = target

    def _build_non_utf8_page(self) -> None:
        refs = []
        for number, caption in enumerate(NON_UTF8_CAPTIONS):
            slot: Slot = (0, "/legacy/catalogue.html", number)
            spec = self._spec(self._key(slot))
            target = (0, f"/legacy/img/{hash_hex('legacy', number, self.seed)}.jpg")
            self._serve_spec(target, spec, "non_utf8", caption)
            refs.append(ImageRef(target, caption))
        page = PageSpec(
            0,
            "/legacy/catalogue.html",
            "Catalogue — café shapes",
            tuple(refs),
            ((0, "/"),),
            encoding="windows-1252",
        )
        self._add_special(
            0,
            page.path,
            Route("page", page=page, content_type="text/html; charset=windows-1252"),
            "non_utf8",
        )
        self._page_kind("ok", (0, page.path))

    def _build_robots(self) -> None:
        for host in range(self.config.hosts):
            body = robots_txt(host == self.robots_host, host == self.delay_host)
            self.routes[(host, "/robots.txt")] = Route(
                "body", content_type="text/plain; charset=utf-8", body=body.encode()
            )

    # ------------------------------------------------------------------ lookup

    def route(self, host: int, path: str) -> Route | None:
        """What `path` on `host` answers; None means 404."""
        found = self.routes.get((host, path))
        if found is None and host == self.trap_host and path.startswith(TRAP_PREFIX):
            return calendar_route(host, path)
        return found

    def page_html(self, page: PageSpec, base_urls: list[str]) -> bytes:
        """The HTML of `page`, encoded in the page's encoding."""
        return render_page(page, base_urls, self.seed).encode(page.encoding)

    def robots_text(self, host: int) -> str:
        return self.routes[(host, "/robots.txt")].body.decode()

    def seed_places(self) -> list[HostPath]:
        return [(0, "/")]

    def truth(self, base_urls: list[str]) -> SandboxTruth:
        """The ground truth with places turned into URLs on `base_urls`."""
        url = _url_maker(base_urls)
        kinds: dict[str, set[str]] = {}
        for fact in self.facts.values():
            kinds.setdefault(fact.kind, set()).add(url(fact.target))
        kinds.setdefault("broken", set()).update(kinds.get("truncated", set()))
        facts = self.facts.values()
        return SandboxTruth(
            seed_urls=tuple(url(p) for p in self.seed_places()),
            kinds={k: frozenset(v) for k, v in kinds.items()},
            captions={url(f.target): f.caption for f in facts if f.caption is not None},
            concepts={url(f.target): f.concept for f in facts if f.concept is not None},
            groups={k: tuple(frozenset(map(url, g)) for g in v) for k, v in self.groups.items()},
            pages={k: frozenset(map(url, v)) for k, v in self.page_kinds.items()},
            redirects={url(s): url(t) for s, t in self.redirects.items()},
            trap_prefixes=(url((self.trap_host, TRAP_PREFIX)),),
            robots={base_urls[h]: self.robots_text(h) for h in range(self.config.hosts)},
        )


def _take_slots(slots: list[Slot], count: int) -> list[Slot] | None:
    """Remove and return the first `count` slots that sit on distinct pages."""
    chosen: list[Slot] = []
    for slot in slots:
        if all(slot[:2] != c[:2] for c in chosen):
            chosen.append(slot)
        if len(chosen) == count:
            break
    if len(chosen) < count:
        return None
    for slot in chosen:
        slots.remove(slot)
    return chosen


def _url_maker(base_urls: list[str]) -> Callable[[HostPath], str]:
    return lambda place: base_urls[place[0]] + place[1]


def robots_txt(disallow_private: bool, crawl_delay: bool) -> str:
    lines = ["# robots.txt of the sandbox web", "User-agent: BadBot", "Disallow: /", ""]
    lines += ["User-agent: *", "Disallow: /cgi-bin/"]
    if disallow_private:
        lines.append(f"Disallow: {PRIVATE_PREFIX}")
    if crawl_delay:
        lines.append(f"Crawl-delay: {CRAWL_DELAY}")
    return "\n".join(lines) + "\n"


_CALENDAR = re.compile(r"^/calendar/(\d{4})/(\d{1,2})(?:/(\d{1,2}))?$")


def calendar_route(host: int, path: str) -> Route | None:
    """The endless calendar: each month links the next month and its days, forever."""
    match = _CALENDAR.match(path)
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    if not (1 <= year <= 9999 and 1 <= month <= 12):
        return None
    days = calendar.monthrange(year, month)[1]
    next_month = (year + month // 12, month % 12 + 1)
    links = [(host, f"/calendar/{next_month[0]}/{next_month[1]}")]
    if match[3] is None:
        links += [(host, f"/calendar/{year}/{month}/{day}") for day in range(1, days + 1)]
        title = f"Events in {calendar.month_name[month]} {year}"
    else:
        day = int(match[3])
        if not 1 <= day <= days:
            return None
        links.append((host, f"/calendar/{year}/{month}"))
        title = f"Events on {day} {calendar.month_name[month]} {year}"
    page = PageSpec(host, path, title, (), tuple(links))
    return Route("page", page=page)


def render_page(page: PageSpec, base_urls: list[str], seed: int) -> str:
    """The page as HTML text: nav links, a paragraph, one figure per image, footer links."""

    def href(place: HostPath) -> str:
        host, path = place
        return html.escape(path if host == page.host else base_urls[host] + path)

    rng = derive_random("text", page.host, page.path, seed)
    nav = "\n".join(
        f'<li><a href="{href(link)}">{_link_text(link)}</a></li>' for link in page.links
    )
    figures = "\n".join(f"<figure>{_img_tag(ref, href)}</figure>" for ref in page.images)
    charset = page.encoding
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="{charset}">\n'
        f"<title>{html.escape(page.title)}</title>\n</head>\n<body>\n"
        f'<a id="top"></a>\n<nav><ul>\n{nav}\n</ul></nav>\n<main>\n'
        f"<h1>{html.escape(page.title)}</h1>\n<p>{' '.join(rng.sample(FILLER, 2))}</p>\n"
        f'{figures}\n</main>\n<footer><a href="#top">Back to top</a></footer>\n'
        "</body>\n</html>\n"
    )


def _link_text(place: HostPath) -> str:
    name = place[1].strip("/").split("/")[-1].removesuffix(".html")
    return html.escape(name or "home")


def _img_tag(ref: ImageRef, href: Callable[[HostPath], str]) -> str:
    alt = "" if ref.alt is None else f' alt="{html.escape(ref.alt)}"'
    if ref.style == "lazy":
        return f'<img src="{PLACEHOLDER_PATH}" data-src="{href(ref.target)}"{alt} class="lazyload">'
    if ref.style == "srcset":
        srcset = ", ".join(f"{href(place)} {width}w" for width, place in ref.srcset)
        return f'<img src="{href(ref.target)}" srcset="{srcset}" sizes="50vw"{alt}>'
    return f'<img src="{href(ref.target)}"{alt} loading="lazy">'
