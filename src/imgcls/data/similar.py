"""The same photo twice: exact copies (equal bytes) and near copies (close perceptual hashes),
within a split (duplicates) and across splits (leakage).

Near copies are found by comparing every pair of 64-bit pHashes with XOR and a bit count, in blocks
so memory stays bounded: ~1 s per 10^9 pairs, fine up to a few hundred thousand images.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from imgcls.data.filecheck import NEAR_DUPLICATE_BITS, FileRecord

Found = tuple[str, str, str]  # (path, kind, detail) of a doctor problem

SPLIT_ORDER = {"train": 0, "all": 0, "val": 1, "test": 2}
BLOCK_ELEMENTS = 1 << 22  # pairs compared per numpy block (32 MiB of uint64)


def near_pairs(hashes: np.ndarray, max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[int, int, int]]:
    """(i, j, differing bits) for i < j whose 64-bit hashes differ in at most ``max_bits`` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    pairs: list[tuple[int, int, int]] = []
    rows = max(1, BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, rows):
        block = hashes[start:start + rows]
        bits = np.bitwise_count(block[:, None] ^ hashes[None, start:])
        ii, jj = np.nonzero(bits <= max_bits)
        for i, j in zip(ii.tolist(), jj.tolist()):
            if j > i:  # column j is hashes[start + j]; row i is hashes[start + i]
                pairs.append((start + i, start + j, int(bits[i, j])))
    return pairs


def _informative(phash: str | None) -> bool:
    """pHash sets the bits of the DCT terms above their median, so a real picture sets about half of
    them; a flat or 1-pixel image sets almost none, and all such images would match one another."""
    return bool(phash) and abs(int(phash, 16).bit_count() - 32) <= 16


def _where(path: str, split: str, cls: str) -> str:
    return f"{split}/{cls}/{Path(path).name}"


def duplicate_problems(usable: dict[str, dict[str, list[str]]], records: dict[str, FileRecord]) -> list[Found]:
    """One problem per later copy (by split, then path), naming the earlier one. Near copies need
    decoded records (with a pHash); exact copies only the bytes' hash."""
    items = sorted(((SPLIT_ORDER.get(split, 3), split, path, cls) for split, classes in usable.items()
                    for cls, paths in classes.items() for path in paths))
    problems: list[Found] = []
    first_by_sha: dict[str, int] = {}
    unique: list[int] = []  # indices of the first file of each content
    for index, (_, split, path, cls) in enumerate(items):
        sha = records[path].sha
        if sha in first_by_sha:
            problems.append(_problem(items[first_by_sha[sha]], items[index], None))
        else:
            first_by_sha[sha] = index
            unique.append(index)

    hashed = [i for i in unique if _informative(records[items[i][2]].phash)]
    if len(hashed) > 1:
        hashes = np.array([int(records[items[i][2]].phash, 16) for i in hashed], dtype=np.uint64)
        partners: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for a, b, bits in near_pairs(hashes):
            partners[hashed[b]].append((hashed[a], bits))
        for later, found in sorted(partners.items()):
            # Prefer a partner from another split: a leak matters more than a duplicate.
            found.sort(key=lambda f: (items[f[0]][1] == items[later][1], f[0]))
            earlier, bits = found[0]
            problems.append(_problem(items[earlier], items[later], bits))
    return problems


def _problem(first: tuple, copy: tuple, bits: int | None) -> Found:
    _, split_a, path_a, cls_a = first
    _, split_b, path_b, cls_b = copy
    what = f"same file as {_where(path_a, split_a, cls_a)}" if bits is None else \
        f"near copy of {_where(path_a, split_a, cls_a)} ({bits} of 64 pHash bits differ)"
    if split_a != split_b:
        return (path_b, "leak", f"{what}: the same picture in {split_a}/ and {split_b}/ makes {split_b} "
                                f"scores look better than they are; delete it from {split_b}/")
    kind = "duplicate" if bits is None else "near-duplicate"
    if cls_a != cls_b:
        return (path_b, kind, f"{what} but filed under class '{cls_b}' here and '{cls_a}' there: a label "
                              f"conflict; keep it in the right class only")
    extra = "; when imgcls splits this folder, the copies may land in train and val (a leak)" \
        if split_b == "all" else ""
    edited = "" if bits is None else " unless they are truly different photos"
    weighs = "training" if split_b in ("train", "all") else f"{split_b} scores"
    return (path_b, kind, f"{what}: it counts twice in {weighs}; delete one{edited}{extra}")
