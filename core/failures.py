"""Why rows did not reach a shard, in one line: the main reason and what to do about it.

The shards stage and `python -m pipeline download` end with this line when no row, or
fewer than half of them, made it into a shard (a run that did nothing says so).
"""

from __future__ import annotations

from core.record import STATUS_FAILED_DECODE, STATUS_FAILED_DOWNLOAD
from core.stats import StageStats

# What to do when most rows fail for one reason (the keys of `failure_reasons`).
FIXES = {
    "private_address": "the URLs reach private or loopback addresses, which the network "
    "policy refuses: allow them with --set \"net.allow_private=['HOST:PORT']\" (a host, "
    "host:port or CIDR)",
    "timeout": "the servers did not answer in time: raise the timeout (shards.timeout, "
    "--timeout) or lower the concurrency",
    "connection_error": "the hosts could not be reached from here: check the URLs and the network",
    "invalid_url": "the url column does not hold http(s) URLs: check the column and the format",
    "not_image": "the servers answer with something other than images: check the URLs",
    "opted_out": "the servers opt out with X-Robots-Tag (noai, noindex...)",
    "too_large": "the images are over shards.max_image_bytes",
    "stalled": "nothing finished for shards.stall_seconds (the watchdog): check the servers",
    STATUS_FAILED_DECODE: "the downloaded files are not images that can be decoded",
    "hash mismatch": "the downloaded files do not match the hashes of the input",
    "image:too_small": "the images are smaller than the minimum side "
    "(shards.min_image_side, --min_image_size)",
    "image:aspect": "the images are too elongated (shards.max_aspect_ratio, --max_aspect_ratio)",
    "image:too_few_bytes": "the images are smaller than shards.min_image_bytes",
}
HTTP_FIX = "the servers refuse the URLs: check them"
# Row statuses whose finer reason the downloader counts (as download:<reason>).
DETAILED_STATUSES = frozenset({STATUS_FAILED_DOWNLOAD, "opted_out"})


def failure_reasons(stats: StageStats) -> dict[str, int]:
    """Rows not in a shard by reason: the downloader's reasons (timeout, http_404...) in
    place of failed_to_download, then decode failures, image rules and duplicates."""
    reasons = {name: n for name, n in stats.dropped.items() if name not in DETAILED_STATUSES}
    for name, n in stats.counts.items():
        if name.startswith("download:"):
            reasons[name.removeprefix("download:")] = n
    return reasons


def failure_summary(seen: int, kept: int, reasons: dict[str, int]) -> str | None:
    """A line naming the reason and its fix when no row, or fewer than half of them,
    reached a shard and one reason accounts for at least half the rows; else None."""
    if seen == 0 or not reasons or (kept > 0 and 2 * kept >= seen):
        return None
    reason, count = max(reasons.items(), key=lambda item: (item[1], item[0]))
    if 2 * count < seen:
        if kept > 0:
            return None
        top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:3]
        return f"no reason dominates: {', '.join(f'{n} {name}' for name, n in top)}"
    fix = FIXES.get(reason) or (HTTP_FIX if reason.startswith("http_") else None)
    line = f"{count} of {seen} rows failed with {reason}"
    return f"{line}: {fix}" if fix else line
