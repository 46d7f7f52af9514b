from __future__ import annotations

import re
from collections import Counter
from urllib.parse import urljoin, urlsplit

import pytest
from protego import Protego

from core.config import SandboxConfig
from sandbox.render import image_bytes
from sandbox.site import PLAN, Route, SandboxSite, SandboxTruth, calendar_route

BASES = [f"http://127.0.0.1:{9100 + i}" for i in range(4)]
LINK = re.compile(r'(?:href|src|data-src)="([^"]+)"')
SRCSET = re.compile(r'srcset="([^"]+)"')


@pytest.fixture(scope="module")
def site() -> SandboxSite:
    return SandboxSite(SandboxConfig())


@pytest.fixture(scope="module")
def truth(site: SandboxSite) -> SandboxTruth:
    return site.truth(BASES)


def place_of(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    return BASES.index(f"{parts.scheme}://{parts.netloc}"), parts.path


def base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_urls(site: SandboxSite, url: str) -> list[str]:
    """Every URL a page's HTML refers to, made absolute."""
    route = site.route(*place_of(url))
    assert route is not None and route.page is not None
    text = site.page_html(route.page, BASES).decode(route.page.encoding)
    found = LINK.findall(text)
    for srcset in SRCSET.findall(text):
        found += [item.split()[0] for item in srcset.split(",")]
    return [urljoin(url, link.replace("&amp;", "&")).split("#")[0] for link in found]


def test_same_seed_same_web_other_seed_other_web(site: SandboxSite) -> None:
    again = SandboxSite(SandboxConfig())
    assert again.truth(BASES) == site.truth(BASES)
    page = site.routes[(0, "/")].page
    assert page is not None and site.page_html(page, BASES) == again.page_html(page, BASES)
    other = SandboxSite(SandboxConfig(seed=1)).truth(BASES)
    assert other.captions != site.truth(BASES).captions
    assert other.kinds["good"] != site.truth(BASES).kinds["good"]


def test_every_planned_fault_is_present(truth: SandboxTruth) -> None:
    for kind, items, copies in PLAN:
        expected = items * copies if kind in ("duplicate_bytes", "near_duplicate") else items
        if kind == "lazy":  # srcset images list three widths each
            expected = items // 2 + 3 * (items - items // 2)
        if kind == "broken":
            expected += dict((k, n) for k, n, _ in PLAN)["truncated"]
        assert len(truth.kinds[kind]) == expected, kind
    assert len(truth.kinds["good"]) > 1500
    assert len(truth.kinds["robots_disallowed"]) == 30
    assert len(truth.groups["duplicate_bytes"]) == 2
    assert all(len(group) == 2 for group in truth.groups["near_duplicate"])


def test_kinds_are_disjoint_apart_from_truncated(truth: SandboxTruth) -> None:
    seen: Counter[str] = Counter()
    for kind, urls in truth.kinds.items():
        if kind != "broken":
            seen.update(urls)
    assert max(seen.values()) == 1
    assert truth.kinds["truncated"] <= truth.kinds["broken"]


def test_good_images_pass_every_rule(site: SandboxSite, truth: SandboxTruth) -> None:
    for url, caption in truth.good.items():
        assert len(caption.split()) > 2 and len(caption) > 5
        route = site.route(*place_of(url))
        assert route is not None and route.kind == "image" and route.image is not None
        spec = route.image
        assert min(spec.width, spec.height) >= 200
        assert max(spec.width, spec.height) / min(spec.width, spec.height) <= 3
        assert route.headers == () and route.content_type == "image/jpeg"
        assert not route.flaky and not route.slow and spec.variant == "plain"
    for url in sorted(truth.good)[:15]:
        route = site.route(*place_of(url))
        assert route is not None and route.image is not None
        assert len(image_bytes(route.image, 0)) > 5_000


def test_good_concepts_are_heavy_tailed(truth: SandboxTruth) -> None:
    counts = Counter(truth.concepts[url] for url in truth.kinds["good"])
    ranked = [n for _, n in counts.most_common()]
    assert len(ranked) >= 40
    assert ranked[0] > 15 * ranked[-1]


def crawl_pages(site: SandboxSite, truth: SandboxTruth) -> tuple[set[str], set[str]]:
    """A robots-respecting BFS over page links; returns (pages reached, URLs referred to)."""
    robots = {base: Protego.parse(text) for base, text in truth.robots.items()}
    pages, referred, queue = set(), set(), list(truth.seed_urls)
    while queue:
        url = queue.pop()
        while url in truth.redirects and url not in pages:
            pages.add(url)
            url = truth.redirects[url]
        allowed = robots[base_of(url)].can_fetch(url, "OpenWITBot")
        if url in pages or truth.is_trap(url) or not allowed:
            continue
        pages.add(url)
        route = site.route(*place_of(url))
        if route is None or route.kind != "page":
            continue
        for link in page_urls(site, url):
            referred.add(link)
            if not link.endswith((".jpg", ".png", ".gif")):
                queue.append(link)
    return pages, referred


def test_pages_are_connected_and_every_image_is_referred_to(
    site: SandboxSite, truth: SandboxTruth
) -> None:
    pages, referred = crawl_pages(site, truth)
    assert truth.pages["ok"] <= pages
    assert not truth.disallowed_pages & pages
    assert truth.disallowed_pages <= referred  # linked, but robots.txt keeps crawlers out
    assert truth.trap_pages <= referred
    images = set().union(*(urls for kind, urls in truth.kinds.items()))
    robots_images = truth.kinds["robots_disallowed"]
    assert images - robots_images <= referred
    assert robots_images.isdisjoint(referred)


def test_robots_txt_per_host(site: SandboxSite, truth: SandboxTruth) -> None:
    parsers = [Protego.parse(site.robots_text(h)) for h in range(4)]
    assert not parsers[1].can_fetch(BASES[1] + "/private/001.html", "OpenWITBot")
    assert parsers[1].can_fetch(BASES[1] + "/", "OpenWITBot")
    assert parsers[0].can_fetch(BASES[0] + "/private/001.html", "OpenWITBot")
    assert [p.crawl_delay("OpenWITBot") for p in parsers] == [None, None, None, 0.5]
    assert not parsers[0].can_fetch(BASES[0] + "/", "BadBot")
    assert all(not parsers[1].can_fetch(url, "OpenWITBot") for url in truth.disallowed_pages)
    delay_pages = [url for url in truth.pages["ok"] if url.startswith(BASES[3])]
    assert len(delay_pages) == 8


def test_calendar_trap_never_ends() -> None:
    path = "/calendar/2026/11"
    for _ in range(100):
        route = calendar_route(2, path)
        assert isinstance(route, Route) and route.page is not None
        assert len(route.page.links) > 28
        path = route.page.links[0][1]
    assert path == "/calendar/2035/3"
    assert calendar_route(2, "/calendar/2026/13") is None
    assert calendar_route(2, "/calendar/2026/2/30") is None


def test_non_utf8_page_encodes_its_alt_in_windows_1252(site: SandboxSite) -> None:
    route = site.route(0, "/legacy/catalogue.html")
    assert route is not None and route.page is not None
    assert route.content_type == "text/html; charset=windows-1252"
    data = site.page_html(route.page, BASES)
    assert b"caf\xe9" in data and b"\x97" in data and b'charset="windows-1252"' in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


@pytest.mark.parametrize(
    "config",
    [SandboxConfig(hosts=1, pages_per_host=2, images_per_page=1), SandboxConfig(hosts=2)],
)
def test_small_sandboxes_build(config: SandboxConfig) -> None:
    truth = SandboxSite(config).truth(BASES[: config.hosts])
    assert truth.seed_urls == (BASES[0] + "/",)
    assert sum(len(v) for v in truth.kinds.values()) >= config.pages_per_host
