"""Which robots.txt group applies to us: Protego's product-token matching (RFC 9309 2.2.1).

A group's name applies to a robot when it occurs in the robot's product token at a token
start, case-insensitively, and the longest such name wins: `OpenWIT` applies to
`OpenWITBot` (a prefix), `WITBot` does not (it starts inside the token), `*` is the
fallback. The first robots.txt is an excerpt of arxiv.org's (as kept in Protego's test
data), whose groups differ in Crawl-delay and rules.
"""

from __future__ import annotations

import pytest

from crawlers.robots import RobotsPolicy, policy_from_response

UA = "OpenWITBot/0.1 (+https://github.com/openwit/openwit)"

ARXIV = b"""# robots.txt for http://arxiv.org/ and mirror sites http://*.arxiv.org/
# Indiscriminate automated downloads from this site are not permitted
# See also: http://arxiv.org/help/robots

User-agent: *
Crawl-delay: 15
Allow: /archive
Allow: /abs
Allow: /pdf
Disallow: /user
Disallow: /e-print
Disallow: /src
Disallow: /search

User-agent: Googlebot
Allow: /archive
Allow: /abs
Allow: /pdf
Disallow: /user
Disallow: /e-print
Disallow: /search

User-agent: Yahoo! Slurp
Crawl-delay: 1
Allow: /abs
Disallow: /search

User-agent: SQUID_configured_as_described_at_/help/faq/cache
Crawl-delay: 10
Allow: /abs
Disallow: /archive

User-agent: YandexBot
Crawl-delay: 1
Allow: /archive
Disallow: /e-print/
"""


def parsed(body: bytes) -> RobotsPolicy:
    policy = policy_from_response(200, None, body)
    assert policy.reason == "parsed"
    return policy


def test_on_arxiv_our_bot_gets_the_star_group():
    policy = parsed(ARXIV)
    assert policy.crawl_delay(UA) == 15.0
    assert policy.allowed("https://arxiv.org/abs/2103.00020", UA)
    assert not policy.allowed("https://arxiv.org/e-print/2103.00020", UA)
    assert not policy.allowed("https://arxiv.org/src/2103.00020", UA)


@pytest.mark.parametrize(
    ("robot", "delay"),
    [
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", None),  # its own group: no delay
        ("Googlebot-Image/1.0", None),  # `Googlebot` is a prefix of its token
        ("YandexBot/3.0", 1.0),
        ("yandexbot", 1.0),  # case does not matter
        ("Yandex/1.0", 15.0),  # a token shorter than the group name: the `*` group
        ("GooglebotX", None),  # Protego: the name at the token's start suffices
        ("MyGooglebot/1.0", 15.0),  # the name starts inside the token: not that group
    ],
)
def test_on_arxiv_groups_go_by_product_token_prefix(robot: str, delay: float | None):
    assert parsed(ARXIV).crawl_delay(robot) == delay


def test_a_group_named_by_a_prefix_of_our_token_applies_to_us():
    policy = parsed(b"User-agent: OpenWIT\nDisallow: /private\n\nUser-agent: *\nDisallow: /\n")
    assert policy.allowed("http://h/page", UA)  # the `OpenWIT` group, not `*`
    assert not policy.allowed("http://h/private/1", UA)


def test_the_longest_matching_group_wins():
    robots = (
        b"User-agent: openwit\nDisallow: /a\n\n"
        b"User-agent: OPENWITBOT\nDisallow: /b\nCrawl-delay: 4\n\n"
        b"User-agent: *\nDisallow: /\n"
    )
    policy = parsed(robots)
    assert policy.allowed("http://h/a", UA) and not policy.allowed("http://h/b", UA)
    assert policy.crawl_delay(UA) == 4.0


@pytest.mark.parametrize(
    "name",
    [b"WITBot", b"Bot", b"OpenWITBot/0.1", b"OpenWITBotanist", b"https", b"github.com"],
)
def test_names_that_are_not_a_prefix_of_our_token_do_not_apply(name: bytes):
    robots = b"User-agent: " + name + b"\nDisallow: /\n\nUser-agent: *\nDisallow: /star-only\n"
    policy = parsed(robots)
    assert policy.allowed("http://h/page", UA), name  # fell through to `*`
    assert not policy.allowed("http://h/star-only", UA)


def test_a_group_listing_several_agents_applies_to_each():
    robots = b"User-agent: Googlebot\nUser-agent: openwitbot\nDisallow: /x\n\nUser-agent: *\n"
    policy = parsed(robots)
    assert not policy.allowed("http://h/x", UA) and policy.allowed("http://h/y", UA)
