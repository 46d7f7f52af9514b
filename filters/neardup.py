"""Near-duplicate images: 64-bit pHash codes within a Hamming radius, found exactly.

Split the 64 bits into radius + 1 bands. Two codes within distance r differ in at most r
bits, so by pigeonhole at least one band is identical: looking up each band of a code
finds every neighbour within r, and checking the full distance of those candidates
removes the rest. Radius 3 gives DataComp/LAION's 4 bands of 16 bits.

`remove_near_duplicates` visits kept pairs in sorted uid order and keeps a pair unless it
lies within the radius of a pair already kept, so the result does not depend on input
order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from pipeline.record import Pair

CODE_BITS = 64
CODE_MASK = (1 << CODE_BITS) - 1


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit codes."""
    return ((a ^ b) & CODE_MASK).bit_count()


def band_layout(bands: int) -> list[tuple[int, int]]:
    """(shift, mask) of each band when 64 bits are cut into `bands` near-equal parts."""
    if not 1 <= bands <= CODE_BITS:
        raise ValueError(f"bands must be between 1 and {CODE_BITS}, got {bands}")
    layout = []
    shift = 0
    for index in range(bands):
        width = CODE_BITS // bands + (1 if index < CODE_BITS % bands else 0)
        layout.append((shift, (1 << width) - 1))
        shift += width
    return layout


class NearDupIndex:
    """Codes indexed by band, answering every neighbour within `radius` exactly."""

    def __init__(self, radius: int = 3) -> None:
        if not 0 <= radius < CODE_BITS:
            raise ValueError(f"radius must be between 0 and {CODE_BITS - 1}, got {radius}")
        self.radius = radius
        self.layout = band_layout(radius + 1)
        self.tables: list[defaultdict[int, list[int]]] = [defaultdict(list) for _ in self.layout]
        self.keys: list[str] = []
        self.codes: list[int] = []

    def __len__(self) -> int:
        return len(self.codes)

    def bands(self, code: int) -> Iterator[int]:
        for shift, mask in self.layout:
            yield (code >> shift) & mask

    def add(self, key: str, code: int) -> None:
        """Index `code` under `key`."""
        slot = len(self.codes)
        self.keys.append(key)
        self.codes.append(code & CODE_MASK)
        for table, band in zip(self.tables, self.bands(code), strict=True):
            table[band].append(slot)

    def candidates(self, code: int) -> set[int]:
        """Slots sharing at least one band with `code`."""
        found: set[int] = set()
        for table, band in zip(self.tables, self.bands(code), strict=True):
            found.update(table.get(band, ()))
        return found

    def query(self, code: int, radius: int | None = None) -> list[tuple[str, int]]:
        """Every indexed (key, distance) within `radius` of `code`, nearest first."""
        limit = self.radius if radius is None else radius
        if not 0 <= limit <= self.radius:
            raise ValueError(f"radius must be between 0 and the index's {self.radius}")
        found = []
        for slot in self.candidates(code):
            distance = hamming(code, self.codes[slot])
            if distance <= limit:
                found.append((self.keys[slot], distance))
        return sorted(found, key=lambda item: (item[1], item[0]))


def visit_order(pair: Pair) -> tuple[str, str, str, int]:
    """The order pairs are visited in; the first of a cluster is kept."""
    return (pair.uid, pair.page_url or "", pair.sha256 or "", pair.phash or 0)


def near_duplicate_slots(pairs: list[Pair], radius: int) -> set[int]:
    """Positions in `pairs` of kept, hashed pairs within `radius` of an earlier kept one."""
    hashed = [i for i, pair in enumerate(pairs) if pair.kept and pair.phash is not None]
    hashed.sort(key=lambda i: visit_order(pairs[i]))
    index = NearDupIndex(radius)
    duplicates: set[int] = set()
    for slot in hashed:
        code = pairs[slot].phash
        assert code is not None
        if index.query(code):
            duplicates.add(slot)
        else:
            index.add(pairs[slot].uid, code)
    return duplicates


def remove_near_duplicates(pairs: Iterable[Pair], radius: int = 3) -> Iterator[Pair]:
    """Drop (`neardup:phash`) kept pairs whose pHash is within `radius` of a kept one."""
    items = list(pairs)
    duplicates = near_duplicate_slots(items, radius)
    for slot, pair in enumerate(items):
        yield pair.dropped("neardup:phash") if slot in duplicates else pair
