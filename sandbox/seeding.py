"""Deterministic randomness: every decision in the sandbox derives from a hash of its parts.

The parts always include a key naming the decision and the sandbox seed, so the same seed
gives the same web on any machine and in any order of requests, and no decision depends on
an unseeded generator.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def hash_int(*parts: object) -> int:
    """A 64-bit unsigned integer from the parts (stable across runs and machines)."""
    text = "\x1f".join(str(part) for part in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_unit(*parts: object) -> float:
    """A number in [0, 1) from the parts."""
    return hash_int(*parts) / 2.0**64


def hash_hex(*parts: object, length: int = 12) -> str:
    """A hex name from the parts, for URLs that must not reveal what they serve."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()[:length]


def derive_random(*parts: object) -> random.Random:
    """A `random.Random` seeded from the parts, for a sequence of related decisions."""
    return random.Random(hash_int(*parts))


def derive_numpy(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from the parts (pixel noise, layouts)."""
    return np.random.default_rng(hash_int(*parts))
