"""Image rules after download: DataComp "basic" size and aspect, LAION's minimum bytes.

They read `original_width`, `original_height` (the decoded image before any resize) and
`image_bytes` (the downloaded body). A value still unknown (None) is not judged: the rule
runs on pairs the downloader decoded, and pairs that failed to download are not kept and
pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from core.config import ShardsConfig
from core.record import Pair


def size_reason(width: int, height: int, config: ShardsConfig) -> str | None:
    """Why an image of this size fails, or None: smallest side, then aspect ratio."""
    short, long = min(width, height), max(width, height)
    if short <= 0 or short < config.min_image_side:
        return "image:too_small"
    if long / short > config.max_aspect_ratio:
        return "image:aspect"
    return None


def image_reason(pair: Pair, config: ShardsConfig) -> str | None:
    """Why the pair's image fails the image rules, or None when it passes."""
    if pair.original_width is not None and pair.original_height is not None:
        reason = size_reason(pair.original_width, pair.original_height, config)
        if reason is not None:
            return reason
    if pair.image_bytes is not None and pair.image_bytes < config.min_image_bytes:
        return "image:too_few_bytes"
    return None


def image_rules(pair: Pair, config: ShardsConfig) -> Pair:
    """`pair` unchanged when its image passes, else dropped with the reason."""
    reason = image_reason(pair, config)
    return pair if reason is None else pair.dropped(reason)


def filter_images(pairs: Iterable[Pair], config: ShardsConfig) -> Iterator[Pair]:
    """Apply the image rules to every kept pair; dropped pairs pass through untouched."""
    for pair in pairs:
        yield image_rules(pair, config) if pair.kept else pair


def declared_size_reasons(
    widths: pa.Array | pa.ChunkedArray, heights: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """Per row "image:declared_tiny" when both declared sides are known and either is at
    most 1 (a tracker pixel), else null (pass): a columnar rule, run before any download."""
    tiny = pc.and_kleene(
        pc.and_(pc.is_valid(widths), pc.is_valid(heights)),
        pc.or_(pc.less_equal(widths, 1), pc.less_equal(heights, 1)),
    )
    return pc.if_else(
        pc.fill_null(tiny, False), "image:declared_tiny", pa.scalar(None, pa.string())
    )
