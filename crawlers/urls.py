"""URL normalisation, the per-host politeness key, private-address checks and trap heuristics.

`normalize_url` gives one spelling per resource so the frontier's seen-set and the dedup
stages compare like with like: scheme and host lower-cased (international hosts as IDNA),
default ports and fragments dropped, `.` and `..` segments resolved, percent-escapes
upper-cased and unreserved characters decoded (RFC 3986 section 6.2.2). The query keeps
its order: reordering parameters can change what a server returns. A host holding a
WHATWG forbidden host code point (space, controls, `<>^|%`...) is invalid.

`ReferenceResolver` resolves many references against one base, giving what
`normalize_url(urljoin(base, reference))` gives, without the parsing for the common
spellings (absolute, root-relative and plain relative references with nothing to fix).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNSAFE = re.compile(r"[^\x21-\x7e]|[\"<>\\^`{|}]|%(?![0-9A-Fa-f]{2})")
# WHATWG forbidden domain code points (after percent-decoding); "." and IDNA are fine
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
# Path and query characters `normalize_url` leaves as they are: printable ASCII except
# `"<>\^`{|}`, `%` (escapes are rewritten) and `#` (the fragment is dropped).
_PLAIN = r"!$&-;=@-\[\]_a-z~"
_PLAIN_ABSOLUTE = re.compile(
    rf"(https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*)(/[{_PLAIN}]*)?(\?[{_PLAIN}?]+)?"
)
_PLAIN_RELATIVE = re.compile(rf"(/?)([{_PLAIN}]*)(\?[{_PLAIN}?]+)?")

MAX_PATH_SEGMENTS = 12  # more than this and a URL is treated as a crawler trap
MAX_SEGMENT_REPEATS = 3  # a path segment occurring this often is a trap (/a/b/a/b/a/...)


class InvalidURLError(ValueError):
    """A URL that cannot be crawled: not http(s), no host, or a bad port."""


def normalize_url(url: str) -> str:
    """The canonical spelling of an absolute http(s) URL; raises `InvalidURLError`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidURLError(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURLError(f"invalid URL {url!r}: scheme must be http or https")
    host = _normalize_host(parts.hostname or "", url)
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalize_escapes(remove_dot_segments(parts.path or "/"))
    query = _normalize_escapes(parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def _normalize_host(host: str, url: str) -> str:
    if not host:
        raise InvalidURLError(f"invalid URL {url!r}: no host")
    host = host.rstrip(".").lower()
    if ":" in host:  # an IPv6 literal
        return f"[{host}]"
    if "%" in host:
        host = unquote(host).lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURLError(f"invalid URL {url!r}: bad host ({exc})") from None
    if not host or _FORBIDDEN_HOST.search(host):
        raise InvalidURLError(f"invalid URL {url!r}: forbidden character in host")
    return host


def _normalize_escapes(text: str) -> str:
    """Upper-case percent-escapes, decode escaped unreserved characters, escape unsafe ones."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else "%" + match.group(1).upper()

    text = _PERCENT.sub(fix, text)
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


class ReferenceResolver:
    """Resolves references found on one page against its base URL, each spelling once.

    `resolve(ref)` equals `normalize_url(urljoin(base, ref))` (and raises what it raises);
    plain spellings are joined as strings, the rest take the general path.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.cache: dict[str, str] = {}
        try:
            normalized = normalize_url(base)
        except InvalidURLError:
            self.origin = self.folder = None
        else:
            parts = urlsplit(normalized)
            self.origin = f"{parts.scheme}://{parts.netloc}"
            self.folder = self.origin + parts.path[: parts.path.rfind("/") + 1]

    def resolve(self, reference: str) -> str:
        """The normalised absolute URL `reference` names; raises `InvalidURLError`."""
        found = self.cache.get(reference)
        if found is None:
            found = self.plain(reference) or normalize_url(urljoin(self.base, reference))
            self.cache[reference] = found
        return found

    def plain(self, reference: str) -> str | None:
        """The resolved URL when `reference` needs no normalising, else None."""
        if "/." in reference or reference.startswith("."):
            return None  # dot segments to remove
        absolute = _PLAIN_ABSOLUTE.fullmatch(reference)
        if absolute is not None:
            origin, path, query = absolute.groups()
            return origin + (path or "/") + (query or "")
        relative = _PLAIN_RELATIVE.fullmatch(reference)
        if relative is None or self.folder is None or self.origin is None:
            return None
        slash, path, query = relative.groups()
        if slash:  # root-relative ("//host" never matches: `/` cannot follow `/` here)
            return None if path.startswith("/") else self.origin + "/" + path + (query or "")
        if ":" in path.split("/", 1)[0] or not path:
            return None  # a scheme, or a query/empty reference: general path
        return self.folder + path + (query or "")


def remove_dot_segments(path: str) -> str:
    """Resolve `.` and `..` in a URL path (RFC 3986 section 5.2.4); never climbs above `/`."""
    output: list[str] = []
    segments = path.split("/")
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if segments[-1] in (".", ".."):
        output.append("")  # "/a/b/.." is the folder "/a/"
    return "/" + "/".join(output)


def host_key(url: str) -> str:
    """`scheme://host:port` of a URL, port always written: the unit of politeness."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_private_ip(address: str) -> bool:
    """True for any address that is not globally routable (loopback, private, link-local...)."""
    ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


def is_private_address(host: str) -> bool:
    """True if `host` is, or resolves to, a non-public address; unresolvable hosts are not.

    A host that resolves to several addresses is private if any of them is, so a name
    cannot smuggle a loopback address in behind a public one.
    """
    if is_ip_literal(host):
        return is_private_ip(host)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return any(is_private_ip(str(info[4][0])) for info in infos)


def trap_reason(url: str, max_url_length: int = 1024) -> str | None:
    """Why a URL looks like a crawler trap (`url_too_long`, `repeated_segment`,
    `too_many_segments`), or None."""
    if len(url) > max_url_length:
        return "url_too_long"
    segments = [s for s in urlsplit(url).path.split("/") if s]
    if len(segments) > MAX_PATH_SEGMENTS:
        return "too_many_segments"
    counts: dict[str, int] = {}
    for segment in segments:
        counts[segment] = counts.get(segment, 0) + 1
        if counts[segment] >= MAX_SEGMENT_REPEATS:
            return "repeated_segment"
    return None


# Query parameters (and `;name=` path parameters) that carry a session id: two URLs that
# differ only in one name the same page (Heritrix's and Nutch's canonicalisation rules).
SESSION_PARAMS = frozenset(
    {"jsessionid", "phpsessid", "sid", "sessionid", "session_id", "sessid", "cfid", "cftoken"}
)
_PATH_SESSION = re.compile(r";(?:jsessionid|phpsessid|sessionid|sid)=[^/?;]*", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")


def strip_session_ids(url: str) -> str:
    """`url` without session-id parameters (`;jsessionid=...`, `?sid=...`, `PHPSESSID`,
    ASP.NET's `ASPSESSIONID*`); the other parameters keep their order."""
    parts = urlsplit(url)
    path = _PATH_SESSION.sub("", parts.path)
    if parts.query:
        kept = [p for p in parts.query.split("&") if not _is_session_param(p)]
        query = "&".join(kept)
    else:
        query = ""
    if path == parts.path and query == parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, path or "/", query, ""))


def _is_session_param(pair: str) -> bool:
    name = pair.split("=", 1)[0].lower()
    return name in SESSION_PARAMS or name.startswith("aspsessionid")


def path_pattern(url: str) -> str:
    """The shape of a URL: its host, its path with each run of digits read as `0`, and
    its query's parameter names; `/calendar/2031/7?view=1` and `/calendar/1999/12?view=2`
    share one."""
    parts = urlsplit(url)
    names = sorted({p.split("=", 1)[0] for p in parts.query.split("&") if p})
    query = "?" + "&".join(names) if names else ""
    return f"{host_key(url)}{_DIGITS.sub('0', parts.path)}{query}"


def query_family(url: str) -> str | None:
    """The URL without its query when it has one (the page whose query variants are
    counted), else None."""
    parts = urlsplit(url)
    if not parts.query:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
