"""MetaCLIP balancing (Algorithm 1): at most about `t` pairs per query entry.

Pass 1 counts, for every entry, the kept pairs that matched it (c_e); run it after the
language filter. Entry e gets p_e = min(1, t / c_e). Pass 2 keeps a pair when the coin of
at least one of its entries falls under p_e, i.e. with probability 1 - prod(1 - p_e).
MetaCLIP flips `random.random()`; here each coin is a pure function of (uid, entry, seed),
so the selection is the same for any input order, partitioning or executor, and on every
rerun.

In worldwide mode (MetaCLIP 2) `t` is an array, the t of each entry's language
(`filters.worldwide`); `expected_kept` gives MetaCLIP's expected selected size,
sum over pairs of 1 - prod(1 - p_e).

Both passes are columnar: `count_matches` and `balance_mask` take the `matched` column
(list<string>) and work on numpy arrays of entry ids from an `EntryIndex`. A coin is
`mix64(uid64 ^ mix64(entry64 ^ mix64(seed)))`, top 53 bits, scaled into [0, 1): uid64 is
the first 16 hex digits of the md5 uid (`uid_words`), entry64 the blake2b-64 of the entry.
The Pair-level functions (`count_entries`, `keep_pair`, `balance`, ...) run the same code.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.hashing import mix64
from core.record import Pair, map_kept_in_batches

UID_HEX_DIGITS = 32  # an md5 hex digest
UID_BLOCK = 1 << 14  # uids decoded per block: temporaries stay in cache
MASK_BLOCK = 1 << 15  # rows per block of `balance_mask`, likewise
GATHER_BELOW = 16  # `repeated_in_row` gathers once under 1/16 of elements remain
BALANCE_BATCH = 65536  # pairs per `balance_mask` call in `balance`
COIN_SHIFT = np.uint64(11)  # keep the top 53 bits: exactly representable as float64
COIN_SCALE = 2.0**-53

ListColumn: TypeAlias = pa.ListArray | pa.ChunkedArray
StringColumn: TypeAlias = pa.Array | pa.ChunkedArray
Threshold: TypeAlias = int | np.ndarray  # one t, or a t per entry (worldwide mode)

# SWAR constants: a byte b < 0x80 gets its high bit from b + (0x80 - bound) iff b >= bound.
HIGH_BITS = np.uint64(0x8080808080808080)
LOW_BITS = np.uint64(0x7F7F7F7F7F7F7F7F)
AT_LEAST = {
    bound: np.uint64(int.from_bytes(bytes([0x80 - bound]) * 8, "little"))
    for bound in (0x30, 0x3A, 0x61, 0x67)
}


def blocks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` covering range(total)."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def blake64(texts: Iterable[str | None]) -> np.ndarray:
    """blake2b-64 of each text's UTF-8, big-endian, as uint64 (None hashes as "")."""
    digests = b"".join(
        hashlib.blake2b((text or "").encode(), digest_size=8).digest() for text in texts
    )
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


# ---- uids as 64-bit words ------------------------------------------------------------


def string_parts(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a string or large_string array, as numpy views of its buffers."""
    if pa.types.is_large_string(strings.type):
        offset_type: type = np.int64
    elif pa.types.is_string(strings.type):
        offset_type = np.int32
    else:
        strings = strings.cast(pa.string())
        offset_type = np.int32
    _, offsets_buffer, data_buffer = strings.buffers()
    first = strings.offset
    offsets: np.ndarray = np.frombuffer(offsets_buffer, dtype=offset_type)
    offsets = offsets[first : first + len(strings) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def all_lower_hex(words: np.ndarray) -> np.ndarray:
    """For rows of 4 uint64 words (32 bytes), True where every byte is in [0-9a-f]."""
    low = words & LOW_BITS
    digit = low + AT_LEAST[0x30]
    digit &= ~(low + AT_LEAST[0x3A])
    letter = low + AT_LEAST[0x61]
    letter &= ~(low + AT_LEAST[0x67])
    digit |= letter
    digit &= ~words  # a byte >= 0x80 is never a hex digit
    every = digit[:, 0] & digit[:, 1] & digit[:, 2] & digit[:, 3]
    return (every & HIGH_BITS) == HIGH_BITS


def hex_words(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(words, ok) for rows of 32 bytes: the first 16 as hex digits packed into a uint64,
    and whether all 32 bytes are lower-case hex digits (words are junk where not ok)."""
    ok = all_lower_hex(digits.view(np.uint64))
    head = digits[:, :16]
    nibbles = (head & np.uint8(15)) + np.uint8(9) * (head >> np.uint8(6))  # '0'->0, 'a'->10
    packed = (nibbles[:, 0::2] << np.uint8(4)) | nibbles[:, 1::2]
    return packed.view(">u8").ravel().astype(np.uint64), ok


def gathered_digits(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The 32 bytes from each start (each start + 32 <= len(data)) as a (rows, 32) array:
    one gather over a view of every 32-byte window of `data`."""
    if len(data) < UID_HEX_DIGITS:
        return np.zeros((0, UID_HEX_DIGITS), dtype=np.uint8)
    windows = np.ndarray(
        shape=(len(data) - UID_HEX_DIGITS + 1,),
        dtype=np.dtype((np.void, UID_HEX_DIGITS)),
        buffer=data,
        strides=(1,),
    )
    return windows[starts].view(np.uint8).reshape(len(starts), UID_HEX_DIGITS)


def chunk_words_at(uids: pa.Array, rows: np.ndarray) -> np.ndarray:
    """`uid_words` of one Arrow array at the given rows."""
    offsets, data = string_parts(uids)
    starts = offsets[rows]
    valid = offsets[rows + 1] - starts == UID_HEX_DIGITS
    if uids.null_count:
        valid &= uids.is_valid().to_numpy(zero_copy_only=False)[rows]
    words = np.zeros(len(rows), dtype=np.uint64)
    for part in blocks(len(rows), UID_BLOCK):
        at = np.flatnonzero(valid[part]) + part.start
        block_words, ok = hex_words(gathered_digits(data, starts[at]))
        words[at] = block_words
        valid[at[~ok]] = False
    fallback = np.flatnonzero(~valid)
    if len(fallback):
        words[fallback] = blake64(uids.take(pa.array(rows[fallback])).to_pylist())
    return words


def uid_words_at(uids: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    """`uid_words(uids)[rows]` for sorted `rows`, decoding only those rows."""
    rows = np.asarray(rows, dtype=np.int64)
    if not isinstance(uids, pa.ChunkedArray):
        return chunk_words_at(uids, rows)
    bounds = np.cumsum([0, *(len(chunk) for chunk in uids.chunks)])
    cuts = np.searchsorted(rows, bounds)
    parts = [
        chunk_words_at(chunk, rows[cuts[i] : cuts[i + 1]] - bounds[i])
        for i, chunk in enumerate(uids.chunks)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def uid_words(uids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 per uid: its first 16 hex digits when it is 32 lower-case hex digits (an md5
    hex digest, as `pair_uid` makes), else the blake2b-64 of its UTF-8 (null as "")."""
    return uid_words_at(uids, np.arange(len(uids), dtype=np.int64))


# ---- entries and coins ---------------------------------------------------------------


class EntryIndex:
    """Query entries numbered 0..n-1 in the given order, with their 64-bit hashes.

    `ids` maps values to numbers with `pc.index_in` (-1 for an unknown value; a repeated
    entry answers its first number); dictionary-encoded values are looked up once per
    dictionary value; integer values are entry numbers already (`number_ids`). `hashes`
    is the blake2b-64 of each entry's UTF-8, computed once (or passed in, as `subset`
    does).
    """

    def __init__(
        self,
        entries: Sequence[str] | pa.Array,
        hashes: np.ndarray | None = None,
        numbers: np.ndarray | None = None,
    ) -> None:
        if isinstance(entries, pa.Array):
            self.values = entries.cast(pa.string())
        else:
            self.values = pa.array(list(entries), type=pa.string())
        self.hashes = blake64(self.values.to_pylist()) if hashes is None else hashes
        if len(self.hashes) != len(self.values):
            raise ValueError(f"{len(self.hashes)} hashes for {len(self.values)} entries")
        # An index made by `subset`: the numbers its entries have in the index it came from,
        # which is what integer values (entry numbers, not strings) are read as.
        self.numbers = numbers
        self._positions: np.ndarray | None = None
        self._last_dictionary: tuple[tuple[int, ...], pa.Array, np.ndarray] | None = None

    def subset(self, numbers: np.ndarray) -> EntryIndex:
        """An index over the entries with these numbers, in this order (hashes reused)."""
        origin = numbers if self.numbers is None else self.numbers[numbers]
        return EntryIndex(self.values.take(pa.array(numbers)), self.hashes[numbers], origin)

    def number_ids(self, codes: np.ndarray) -> np.ndarray:
        """`ids` of entry numbers: the number itself in a full index, its position in a
        subset, -1 for a number out of range or outside the subset."""
        if self.numbers is None:
            valid = (codes >= 0) & (codes < len(self))
            return np.where(valid, codes, -1).astype(np.int64, copy=False)
        if self._positions is None:
            self._positions = np.full(int(self.numbers.max(initial=-1)) + 1, -1, dtype=np.int64)
            self._positions[self.numbers] = np.arange(len(self.numbers))
        valid = (codes >= 0) & (codes < len(self._positions))
        found = np.full(len(codes), -1, dtype=np.int64)
        found[valid] = self._positions[codes[valid]]
        return found

    def __len__(self) -> int:
        return len(self.values)

    def ids(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """int64 entry number of each value, -1 where the value is not an entry (or null)."""
        if isinstance(values, pa.ChunkedArray):
            parts = [self.ids(chunk) for chunk in values.chunks]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if pa.types.is_integer(values.type):
            return self.number_ids(pc.fill_null(values, -1).to_numpy(zero_copy_only=False))
        if pa.types.is_dictionary(values.type):
            codes = values.indices
            if codes.null_count:
                codes = pc.fill_null(codes, -1)
            return self.dictionary_ids(values.dictionary)[codes.to_numpy(zero_copy_only=False)]
        found = pc.index_in(values, value_set=self.values)
        numbers = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
        return numbers.astype(np.int64, copy=False)

    def dictionary_ids(self, dictionary: pa.Array) -> np.ndarray:
        """`ids` of a dictionary's values, then -1 (for null codes). The last dictionary's
        answer is kept: slices of one dictionary array share its buffers, and the kept
        reference keeps those buffers (and so their addresses) alive."""
        key = (dictionary.offset, len(dictionary), *(b.address for b in dictionary.buffers() if b))
        if self._last_dictionary is None or self._last_dictionary[0] != key:
            self._last_dictionary = (key, dictionary, np.append(self.ids(dictionary), -1))
        return self._last_dictionary[2]


def entry_keys(entry64: np.ndarray, seed: int) -> np.ndarray:
    """The per-entry half of the coin: mix64(entry64 ^ mix64(seed))."""
    seed_word = mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return mix64(np.asarray(entry64, dtype=np.uint64) ^ seed_word)


def coins_from_keys(uid64: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """float64 in [0, 1): the top 53 bits of mix64(uid64 ^ key), scaled by 2**-53."""
    mixed = mix64(np.asarray(uid64, dtype=np.uint64) ^ keys)
    return (mixed >> COIN_SHIFT).astype(np.float64) * COIN_SCALE


def coin_values(uid64: np.ndarray, entry64: np.ndarray, seed: int) -> np.ndarray:
    """float64 in [0, 1) per (uid64, entry64): mix64(uid64 ^ mix64(entry64 ^ mix64(seed)))
    >> 11, times 2**-53. Uniform for distinct inputs, fixed by them and the seed."""
    return coins_from_keys(uid64, entry_keys(entry64, seed))


def coin(uid: str, entry: str, seed: int) -> float:
    """A number in [0, 1) fixed by (uid, entry, seed): the coin MetaCLIP draws at random."""
    uid64 = uid_words(pa.array([uid], type=pa.string()))
    return float(coin_values(uid64, blake64([entry]), seed)[0])


def entry_probabilities(counts: np.ndarray, t: Threshold) -> np.ndarray:
    """p_e = min(1, t / c_e) per entry: an entry seen at most `t` times (or never) is 1.
    `t` is one threshold or one per entry (MetaCLIP 2: the t of the entry's language)."""
    counts = np.asarray(counts, dtype=np.int64)
    limits = np.broadcast_to(np.asarray(t, dtype=np.int64), counts.shape)
    chances = np.ones(len(counts), dtype=np.float64)
    over = counts > limits
    chances[over] = limits[over] / counts[over]
    return chances


def expected_kept(
    matched: pa.ListArray | pa.ChunkedArray, counts: np.ndarray, index: EntryIndex, t: Threshold
) -> float:
    """MetaCLIP's expected selected size of these rows: sum of 1 - prod(1 - p_e) over
    each row's distinct matched entries (values that are not entries keep p = 1)."""
    values, rows = flattened(matched)
    ids = index.ids(values)
    chances = np.append(entry_probabilities(counts, t), 1.0)  # id -1: not an entry, p = 1
    first = ~repeated_in_row(ids, rows)
    with np.errstate(divide="ignore"):
        misses = np.log1p(-chances[ids[first]])  # -inf where p_e = 1: surely kept
    missed = np.zeros(len(matched), dtype=np.float64)
    np.add.at(missed, rows[first], misses)
    has_match = np.zeros(len(matched), dtype=bool)
    has_match[rows] = True
    return float(np.sum(-np.expm1(missed[has_match])))


def entry_probability(count: int, t: int) -> float:
    """p_e = min(1, t / c_e); an entry seen at most `t` times (or never) is always kept."""
    return float(entry_probabilities(np.array([count]), t)[0])


# ---- the two passes ------------------------------------------------------------------


def flattened(matched: ListColumn) -> tuple[StringColumn, np.ndarray]:
    """(values, rows): every matched entry and the row (0..len-1) its list belongs to."""
    if isinstance(matched, pa.ChunkedArray):
        values = pa.chunked_array(
            [pc.list_flatten(chunk) for chunk in matched.chunks], type=matched.type.value_type
        )
        rows, start = [], 0
        for chunk in matched.chunks:
            rows.append(pc.list_parent_indices(chunk).to_numpy() + start)
            start += len(chunk)
        return values, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    rows_array = pc.list_parent_indices(matched).to_numpy(zero_copy_only=False)
    return pc.list_flatten(matched), rows_array.astype(np.int64, copy=False)


def repeated_in_row(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """True for an element whose id already occurs earlier in the same row (`rows` sorted).

    Compares each element with the one 1, 2, ... places before it while that lies in the
    same row: whole-array passes while many elements have such a neighbour, then passes
    over the few that remain. The work is about the sum of squared list lengths.
    """
    repeated = np.zeros(len(ids), dtype=bool)
    back = 1
    while back < len(ids):
        same_row = rows[back:] == rows[:-back]
        if np.count_nonzero(same_row) * GATHER_BELOW < len(ids):
            break
        repeated[back:] |= same_row & (ids[back:] == ids[:-back])
        back += 1
    else:
        return repeated
    candidates = np.flatnonzero(same_row) + back  # elements with one `back` places before
    while len(candidates):
        repeated[candidates] |= ids[candidates] == ids[candidates - back]
        back += 1
        candidates = candidates[candidates >= back]
        candidates = candidates[rows[candidates] == rows[candidates - back]]
    return repeated


def count_matches(
    matched: pa.ListArray | pa.ChunkedArray, index: EntryIndex, mask: np.ndarray | None = None
) -> np.ndarray:
    """Pass 1: int64 per entry of `index`, the number of rows (where `mask` is True, all
    rows when None) whose matched list holds it; an entry twice in one list counts once,
    values that are not entries are ignored."""
    values, rows = flattened(matched)
    ids = index.ids(values)
    counted = ids >= 0
    if mask is not None:
        counted &= np.asarray(mask, dtype=bool)[rows]
    counted &= ~repeated_in_row(ids, rows)
    return np.bincount(ids[counted], minlength=len(index)).astype(np.int64)


def balance_mask(
    uids: pa.Array | pa.ChunkedArray,
    matched: pa.ListArray | pa.ChunkedArray,
    counts: np.ndarray,
    index: EntryIndex,
    t: Threshold,
    seed: int,
) -> np.ndarray:
    """Pass 2: bool per row, True where the pair is kept: the coin of some matched entry e
    falls under p_e = min(1, t / c_e) (counts from pass 1, by entry number). An entry with
    c_e <= t, or a value that is not an entry, always keeps its row; a row without any
    matched value is False. Only the entries with c_e > t are looked up and hashed, only
    the uids of rows holding one are decoded, `MASK_BLOCK` rows at a time."""
    if len(uids) != len(matched):
        raise ValueError(f"{len(uids)} uids for {len(matched)} matched lists")
    chances = entry_probabilities(counts, t)
    head = np.flatnonzero(chances < 1.0)
    tosses = HeadTosses(index.subset(head), entry_keys(index.hashes[head], seed), chances[head])
    kept = np.zeros(len(matched), dtype=bool)
    for part in blocks(len(matched), MASK_BLOCK):
        size = part.stop - part.start
        kept[part] = tosses.mask(uids.slice(part.start, size), matched.slice(part.start, size))
    return kept


class HeadTosses:
    """The coins of the entries with p_e < 1 (the head): their index, keys and chances."""

    def __init__(self, head: EntryIndex, keys: np.ndarray, chances: np.ndarray) -> None:
        self.head, self.keys, self.chances = head, keys, chances

    def mask(self, uids: StringColumn, matched: ListColumn) -> np.ndarray:
        """`balance_mask` of one block of rows."""
        values, rows = flattened(matched)
        head_ids = self.head.ids(values)  # position in the head, -1 where p_e = 1
        tossed = np.flatnonzero(head_ids >= 0)
        tossed_rows = rows[tossed]
        first = np.ones(len(tossed_rows), dtype=bool)
        first[1:] = tossed_rows[1:] != tossed_rows[:-1]
        words = uid_words_at(uids, tossed_rows[first])[np.cumsum(first) - 1]
        entry = head_ids[tossed]
        wins = coins_from_keys(words, self.keys[entry]) < self.chances[entry]
        kept = np.zeros(len(matched), dtype=bool)
        kept[rows[head_ids < 0]] = True
        kept[tossed_rows[wins]] = True
        return kept


# ---- Pair-level wrappers -------------------------------------------------------------


def matched_column(pairs: Sequence[Pair]) -> pa.ListArray:
    return pa.array([pair.matched for pair in pairs], type=pa.list_(pa.string()))


def count_entries(pairs: Iterable[Pair]) -> Counter[str]:
    """Pass 1: the number of kept pairs matching each entry (a pair counts once per entry)."""
    kept = [pair for pair in pairs if pair.kept]
    entries = sorted({entry for pair in kept for entry in pair.matched})
    counts = count_matches(matched_column(kept), EntryIndex(entries))
    return Counter({entry: int(count) for entry, count in zip(entries, counts, strict=True)})


def pair_mask(
    pairs: Sequence[Pair], counts: np.ndarray, index: EntryIndex, t: int, seed: int
) -> np.ndarray:
    uids = pa.array([pair.uid for pair in pairs], type=pa.string())
    return balance_mask(uids, matched_column(pairs), counts, index, t, seed)


def count_array(counts: Mapping[str, int]) -> tuple[EntryIndex, np.ndarray]:
    """An index over the entries of `counts` and their counts in index order."""
    return EntryIndex(list(counts)), np.array(list(counts.values()), dtype=np.int64)


def keep_pair(
    uid: str, entries: Iterable[str], counts: Mapping[str, int], t: int, seed: int
) -> bool:
    """True when the coin of any matched entry falls under that entry's probability."""
    matched = sorted(set(entries))
    index, known = count_array({entry: counts.get(entry, 0) for entry in matched})
    uids = pa.array([uid], type=pa.string())
    lists = pa.array([matched], type=pa.list_(pa.string()))
    return bool(balance_mask(uids, lists, known, index, t, seed)[0])


def balance_pair(pair: Pair, counts: Mapping[str, int], t: int, seed: int) -> Pair:
    """`pair` unchanged when balancing keeps it, else dropped with the reason."""
    if not pair.matched:
        return pair.dropped("balance:no_entry")
    if keep_pair(pair.uid, pair.matched, counts, t, seed):
        return pair
    return pair.dropped("balance:over_threshold")


def balanced(pair: Pair, keep: bool) -> Pair:
    if not pair.matched:
        return pair.dropped("balance:no_entry")
    return pair if keep else pair.dropped("balance:over_threshold")


def balance(
    pairs: Iterable[Pair], counts: Mapping[str, int], t: int, seed: int = 0
) -> Iterator[Pair]:
    """Pass 2 over kept pairs with the counts of pass 1; dropped pairs pass untouched.

    Pairs are decided `BALANCE_BATCH` at a time, in one `balance_mask` call per batch.
    """
    index, known = count_array(counts)

    def decide(kept: list[Pair]) -> list[bool]:
        return list(pair_mask(kept, known, index, t, seed).tolist())

    return map_kept_in_batches(pairs, BALANCE_BATCH, decide, balanced)


def keep_probability(entry_counts: Sequence[int], t: int) -> float:
    """The chance a pair whose entries have these counts survives: 1 - prod(1 - p_e)."""
    chances = entry_probabilities(np.asarray(entry_counts, dtype=np.int64), t)
    return 1.0 - math.prod((1.0 - chances).tolist())


def expected_size(counts_per_pair: Iterable[Sequence[int]], t: int) -> float:
    """Expected number of pairs kept: the sum of `keep_probability` over pairs."""
    return sum(keep_probability(counts, t) for counts in counts_per_pair)


def entry_counts_per_pair(pairs: Iterable[Pair], counts: Mapping[str, int]) -> Iterator[list[int]]:
    """For each kept pair, the counts of its matched entries (the input of `expected_size`)."""
    for pair in pairs:
        if pair.kept:
            yield [counts.get(entry, 0) for entry in sorted(set(pair.matched))]
