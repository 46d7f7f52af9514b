from __future__ import annotations

import pyarrow as pa
import pytest

from core.config import ShardsConfig
from core.record import STATUS_FAILED_DOWNLOAD, STATUS_SUCCESS, Pair
from filters.image_rules import declared_size_reasons, filter_images, image_rules

CONFIG = ShardsConfig()


def downloaded(width: int | None, height: int | None, size: int | None) -> Pair:
    return Pair(
        url="http://img/a.jpg",
        caption="a photo of a dog",
        status=STATUS_SUCCESS,
        original_width=width,
        original_height=height,
        image_bytes=size,
    )


@pytest.mark.parametrize(
    ("width", "height", "size", "reason"),
    [
        (640, 480, 40_000, None),
        (200, 200, 5_000, None),  # exactly on every limit
        (600, 200, 9_000, None),  # aspect exactly 3
        (199, 400, 40_000, "image:too_small"),
        (4000, 150, 40_000, "image:too_small"),  # too small wins over aspect
        (0, 0, 40_000, "image:too_small"),
        (601, 200, 40_000, "image:aspect"),
        (300, 1000, 40_000, "image:aspect"),
        (640, 480, 4_999, "image:too_few_bytes"),
        (None, None, 4_000, "image:too_few_bytes"),  # size unknown: only bytes judged
        (100, 100, None, "image:too_small"),
        (None, None, None, None),
    ],
)
def test_image_rules(
    width: int | None, height: int | None, size: int | None, reason: str | None
) -> None:
    pair = downloaded(width, height, size)
    out = image_rules(pair, CONFIG)
    assert out.drop_reason == reason
    if reason is None:
        assert out is pair


def test_limits_follow_config() -> None:
    loose = ShardsConfig(min_image_side=64, max_aspect_ratio=10.0, min_image_bytes=0)
    assert image_rules(downloaded(64, 600, 10), loose).kept
    assert image_rules(downloaded(63, 600, 10), loose).drop_reason == "image:too_small"
    assert image_rules(downloaded(64, 641, 10), loose).drop_reason == "image:aspect"


def test_filter_images_passes_failed_and_dropped_untouched() -> None:
    failed = Pair(url="http://img/x.jpg", caption="gone", status=STATUS_FAILED_DOWNLOAD)
    dropped = downloaded(10, 10, 10).dropped("dedup:url")
    small = downloaded(10, 10, 10)
    out = list(filter_images([failed, dropped, small], CONFIG))
    assert out[0] is failed and out[1] is dropped
    assert out[2].drop_reason == "image:too_small"


def test_declared_size_reasons_flag_tracker_pixels() -> None:
    widths = pa.array([1, 640, 0, None, 300, 2, None], pa.int32())
    heights = pa.array([1, 1, 200, 1, 200, 2, None], pa.int32())
    reasons = declared_size_reasons(widths, heights)
    assert reasons.type == pa.string()
    assert reasons.to_pylist() == [
        "image:declared_tiny",
        "image:declared_tiny",
        "image:declared_tiny",
        None,  # one side unknown: not judged
        None,
        None,
        None,
    ]
