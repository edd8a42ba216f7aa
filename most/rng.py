"""Seeded random streams, one per purpose, stable across Python versions and processes."""

from __future__ import annotations

import hashlib
import random


def rng_for(seed: int, *purpose: object) -> random.Random:
    """An independent random stream for (`seed`, `purpose`): adding a new use never shifts another's."""
    digest = hashlib.sha256(repr((seed,) + purpose).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))
