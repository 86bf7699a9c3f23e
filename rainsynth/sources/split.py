"""Seeded train/test splits that never put the same source video (group) on both sides.

    split_sequences(refs, "900/100", seed=0)   # counts: exactly 900 train and 100 test clips
    split_sequences(refs, "0.9/0.1", seed=0)   # fractions: whole groups, sizes approximate

With counts, the test clips are drawn from as few whole groups as first-fit over a seeded group
order allows, and the train clips from the other groups. With fractions, each side takes whole
groups until it is as close as it gets to its share (a 1.0 total gives train every group test
did not take). When the refs carry a subset (the Vimeo-90K lists), the lists decide instead:
test clips come from the "test" refs and train clips from the "train" refs, and a fraction is of
all the refs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rainsynth import rng
from rainsynth.errors import SourceError
from rainsynth.sources.base import SequenceRef

SIDES = ("train", "test")


def split_sequences(
    refs: list[SequenceRef], split: str, *, seed: int
) -> dict[str, list[SequenceRef]]:
    """{"train": [...], "test": [...]} chosen from refs (each side in the refs' order).

    split: "TRAIN/TEST" as counts ("900/100") or fractions ("0.9/0.1"). Raises SourceError when
    more clips are asked for than exist (saying how many there are and in how many groups), on
    a malformed split, or on duplicate keys.
    """
    counts, wanted = parse_split(split)
    keys = [ref.key for ref in refs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise SourceError(f"sequence key {duplicate!r} appears twice; keys must be unique")
    generator = rng.stream(seed, 0, rng.CLIP_LEVEL, "split")
    subsets = {ref.subset for ref in refs}
    if subsets - {None}:
        if not subsets <= set(SIDES):
            raise SourceError(f"every sequence needs a subset in {SIDES} or none; found {subsets}")
        if not counts:
            wanted = tuple(round(share * len(refs)) for share in wanted)
        picked = _by_lists(refs, wanted, generator)
    else:
        groups = _groups(refs)
        picked = (_by_counts if counts else _by_fractions)(refs, groups, wanted, generator)
    return {side: [refs[i] for i in sorted(picked[side])] for side in SIDES}


def parse_split(split: str) -> tuple[bool, tuple]:
    """(True, (train, test)) for counts "900/100"; (False, (0.9, 0.1)) for fractions."""
    parts = str(split).split("/")
    allowed = "'TRAIN/TEST' as counts ('900/100') or fractions ('0.9/0.1')"
    if len(parts) != 2:
        raise SourceError(f"split {split!r} is not {allowed}")
    try:
        if all(part.strip().isdigit() for part in parts):
            values: tuple = tuple(int(part) for part in parts)
            counts = True
        else:
            values = tuple(float(part) for part in parts)
            counts = False
    except ValueError:
        raise SourceError(f"split {split!r} is not {allowed}") from None
    if sum(values) <= 0:
        raise SourceError(f"split {split!r} asks for no sequences; expected {allowed}")
    if not counts and (min(values) < 0 or sum(values) > 1 + 1e-9):
        raise SourceError(f"split fractions {split!r} must be >= 0 and add up to at most 1")
    return counts, values


def _groups(refs: list[SequenceRef]) -> list[list[int]]:
    """Indices of the refs of each group, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, ref in enumerate(refs):
        groups.setdefault(ref.group, []).append(i)
    return list(groups.values())


def _draw(generator: np.random.Generator, pool: Sequence[int], count: int) -> list[int]:
    """`count` distinct members of pool, seeded."""
    chosen = generator.choice(len(pool), size=count, replace=False) if count else []
    return [pool[i] for i in chosen]


def _by_lists(refs, wanted, generator) -> dict[str, list[int]]:
    """Draw each side from the refs its list assigns to it."""
    pools = {side: [i for i, ref in enumerate(refs) if ref.subset == side] for side in SIDES}
    picked = {}
    for side, count in zip(SIDES[::-1], wanted[::-1], strict=True):  # test first
        if count > len(pools[side]):
            raise SourceError(
                f"asked for {count} {side} sequences, but the source's {side} list has "
                f"{len(pools[side])} (it lists {len(pools['train'])} train and "
                f"{len(pools['test'])} test sequences)"
            )
        picked[side] = _draw(generator, pools[side], count)
    return picked


def _by_counts(refs, groups, wanted, generator) -> dict[str, list[int]]:
    """Exactly `wanted` (train, test) clips, test from whole groups, train from the others."""
    train, test = wanted
    about = f"there are {len(refs)} sequences in {len(groups)} groups (source videos)"
    if train + test > len(refs):
        raise SourceError(f"asked for {train} train + {test} test sequences, but {about}")
    order = [groups[i] for i in generator.permutation(len(groups))]
    taken = _first_fit(order, test, exact=True) if test else set()
    test_pool = sorted(i for k in taken for i in order[k])
    train_pool = sorted(i for k, group in enumerate(order) if k not in taken for i in group)
    if len(train_pool) < train:
        raise SourceError(
            f"asked for {train} train + {test} test sequences with no source video on both "
            f"sides: the test sequences take {len(taken)} whole group(s), leaving "
            f"{len(train_pool)} sequences for train; {about}"
        )
    return {"test": _draw(generator, test_pool, test), "train": _draw(generator, train_pool, train)}


def _by_fractions(refs, groups, wanted, generator) -> dict[str, list[int]]:
    """Whole groups for each side, as close to its share of the refs as they come."""
    train, test = wanted
    order = [groups[i] for i in generator.permutation(len(groups))]
    taken = _first_fit(order, test * len(refs), exact=False) if test else set()
    rest = [group for k, group in enumerate(order) if k not in taken]
    if train + test >= 1 - 1e-9:
        kept = rest
    else:
        kept = [rest[k] for k in sorted(_first_fit(rest, train * len(refs), exact=False))]
    if train and not kept or test and not taken:
        raise SourceError(
            f"cannot split {len(refs)} sequences from {len(groups)} group(s) (source videos) into "
            "train and test without a group on both sides; add sources or use counts"
        )
    return {
        "test": [i for k in taken for i in order[k]],
        "train": [i for group in kept for i in group],
    }


def _first_fit(order: list[list[int]], target: float, *, exact: bool) -> set[int]:
    """Positions in `order` of groups whose sizes add up to about `target` (>= it when exact).

    First fit: take each group that still fits. Then, if short, take the smallest group left
    when `exact` (it covers the rest: every group left was too big to fit), when nothing was
    taken, or when it brings the total closer to the target.
    """
    taken, total = set(), 0
    for k, group in enumerate(order):
        if total + len(group) <= target + 1e-9:
            taken.add(k)
            total += len(group)
    rest = [k for k in range(len(order)) if k not in taken]
    if total < target - 1e-9 and rest:
        smallest = min(rest, key=lambda k: len(order[k]))
        closer = abs(total + len(order[smallest]) - target) < abs(total - target)
        if exact or closer or not taken:
            taken.add(smallest)
    return taken
