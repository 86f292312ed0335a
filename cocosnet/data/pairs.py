"""Exemplar pair lists: for each query image, its retrieved exemplars ranked 1..K.

Table (Parquet) columns: ``query`` and ``exemplar`` (sample ids), ``rank`` (int32, 1-based, 1 =
best match), ``score`` (float32 similarity; null for lists imported from the official text
files) and ``split`` (train/val/test).  Every write and read is validated; problems are reported
together with their 0-based row numbers (as in :mod:`cocosnet.data.manifest`):

* query and exemplar are non-empty strings and differ (no self-pairs);
* no duplicate ``(query, rank)``, and each query's ranks are exactly ``1..K``;
* with ``known_ids``, every query and exemplar id must be one of them (never dropped silently).

The official CoCosNet lists are text lines ``key,ref1,...,refK`` (ref1 = top-1 retrieval, refK =
last-ranked one; training uses ref1 and refK, testing ref1).  :func:`export_official` writes them
and :func:`import_official` reads them (backslash paths such as DeepFashion's
``img\\WOMEN\\...jpg`` are normalised to ``/`` and then mapped to sample ids by ``id_of``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import pyarrow as pa

from ..files import atomic_path
from ..tables import MAX_SHOWN, read_table, summarize_problems, write_table
from .manifest import SPLITS

PAIRS = "pairs.parquet"  # a pair list's conventional name (the index stage's output)

SCHEMA = pa.schema(
    [
        pa.field("query", pa.string(), nullable=False),
        pa.field("exemplar", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=True),
        pa.field("split", pa.string(), nullable=False),
    ]
)


class PairsError(ValueError):
    """A pair list (or rows about to enter one) is malformed."""


def _is_id(value: object) -> bool:
    return isinstance(value, str) and value != ""


def check_pairs(rows: Sequence[Mapping], known_ids: Collection[str] | None = None) -> None:
    """Raise :class:`PairsError` listing every problem in ``rows`` (with 0-based row numbers)."""
    problems: list[str] = []
    known = None if known_ids is None else set(known_ids)
    seen: dict[tuple[str, int], int] = {}
    ranks: dict[str, list[tuple[int, int]]] = {}  # query -> [(rank, row)]
    for i, row in enumerate(rows):
        query, exemplar, rank = row.get("query"), row.get("exemplar"), row.get("rank")
        where = f"row {i} (query {query!r}, rank {rank!r})"
        if not _is_id(query):
            problems.append(f"{where}: query must be a non-empty string")
        if not _is_id(exemplar):
            problems.append(f"{where}: exemplar must be a non-empty string, got {exemplar!r}")
        if _is_id(query) and query == exemplar:
            problems.append(f"{where}: exemplar equals the query (self-pair)")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            problems.append(f"{where}: rank must be an integer >= 1")
        elif _is_id(query):
            key = (query, rank)
            if key in seen:
                problems.append(f"{where}: duplicate (query, rank), first at row {seen[key]}")
            else:
                seen[key] = i
                ranks.setdefault(query, []).append((rank, i))
        score = row.get("score")
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            problems.append(f"{where}: score must be a finite number or None, got {score!r}")
        if row.get("split") not in SPLITS:
            problems.append(f"{where}: split {row.get('split')!r} not in {SPLITS}")
        if known is not None:
            unknown = [v for v in (query, exemplar) if _is_id(v) and v not in known]
            if unknown:
                problems.append(f"{where}: unknown id(s) {sorted(set(unknown))}")
    for query, entries in ranks.items():
        present = sorted(r for r, _ in entries)
        if present != list(range(1, len(present) + 1)):
            missing = sorted(set(range(1, present[-1] + 1)) - set(present))
            rows_at = [i for _, i in sorted(entries)]
            problems.append(
                f"rows {rows_at} (query {query!r}): ranks {present} are not contiguous 1..K "
                f"(missing {missing})"
            )
    if problems:
        raise PairsError(summarize_problems("invalid pair list", problems))


def write_pairs(
    path: str | os.PathLike, rows: Iterable[Mapping], known_ids: Collection[str] | None = None
) -> int:
    """Validate ``rows`` and write them atomically as Parquet; returns the number of rows."""
    rows = [{name: r.get(name) for name in SCHEMA.names} for r in rows]
    check_pairs(rows, known_ids)
    write_table(path, rows, SCHEMA)
    return len(rows)


def read_pairs(path: str | os.PathLike, known_ids: Collection[str] | None = None) -> list[dict]:
    """Read and validate a Parquet pair list (with ``known_ids``: every id must be known)."""
    rows = read_table(path, SCHEMA, "pair list", PairsError)
    try:
        check_pairs(rows, known_ids)
    except PairsError as err:
        raise PairsError(f"{path}: {err}") from None
    return rows


def pairs_from_topk(
    query_ids: Sequence[str],
    topk_ids: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]] | None,
    split: str,
) -> list[dict]:
    """Rows for retrieval results: ``topk_ids[i][j]`` is query ``i``'s rank ``j + 1`` exemplar.

    ``scores`` (same shape, or None) are stored as float32.  The rows are validated, so a
    retrieval that returned the query itself or an empty id raises :class:`PairsError`.
    """
    if len(topk_ids) != len(query_ids):
        raise PairsError(f"{len(query_ids)} query ids but {len(topk_ids)} top-k lists")
    if scores is not None and len(scores) != len(query_ids):
        raise PairsError(f"{len(query_ids)} query ids but {len(scores)} score lists")
    rows = []
    for i, (query, exemplars) in enumerate(zip(query_ids, topk_ids, strict=True)):
        row_scores = None if scores is None else scores[i]
        if row_scores is not None and len(row_scores) != len(exemplars):
            raise PairsError(
                f"query {i} ({query!r}): {len(exemplars)} exemplars but {len(row_scores)} scores"
            )
        for j, exemplar in enumerate(exemplars):
            rows.append(
                {
                    "query": query,
                    "exemplar": exemplar,
                    "rank": j + 1,
                    "score": None if row_scores is None else float(row_scores[j]),
                    "split": split,
                }
            )
    check_pairs(rows)
    return rows


def _grouped(rows: Sequence[Mapping]) -> dict[str, list[str]]:
    """``{query: [exemplar by rank]}`` for validated rows, queries sorted."""
    by_query: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append((row["rank"], row["exemplar"]))
    return {q: [e for _, e in sorted(by_query[q])] for q in sorted(by_query)}


def _exportable(name: str) -> bool:
    """Whether :func:`import_official` reads ``name`` back unchanged from a text line: it
    splits on commas and on every line break str.splitlines knows, strips whitespace, turns
    backslashes into ``/`` and drops a leading byte-order mark."""
    return (
        "," not in name
        and "\\" not in name
        and "\ufeff" not in name
        and name == name.strip()
        and name.splitlines() == [name]
    )


def export_official(path: str | os.PathLike, rows: Iterable[Mapping]) -> int:
    """Write rows as official ``key,ref1,...,refK`` lines (by query, then rank), atomically.

    Returns the number of lines.  Ids that would not read back unchanged (a comma, a line
    break, a backslash, a byte-order mark, surrounding whitespace) cannot be written.
    """
    rows = list(rows)
    check_pairs(rows)
    grouped = _grouped(rows)
    bad = sorted({v for q, refs in grouped.items() for v in (q, *refs) if not _exportable(v)})
    if bad:
        raise PairsError(
            "ids with a comma, line break, backslash, byte-order mark or surrounding whitespace "
            f"would not read back: {bad[:MAX_SHOWN]}"
        )
    text = "".join(",".join([q, *refs]) + "\n" for q, refs in grouped.items())
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return len(grouped)


def _identity(name: str) -> str:
    return name


def import_official(
    path: str | os.PathLike,
    *,
    split: str,
    known_ids: Collection[str] | None = None,
    id_of: Callable[[str], str] = _identity,
) -> list[dict]:
    """Parse an official ``key,ref1,...,refK`` list into rows (``score`` None, rank = position).

    Lines are stripped and blank ones skipped; each field is stripped, its backslashes become
    ``/`` and ``id_of`` maps it to a sample id.  A line needs a key and at least one ref; lines
    without a comma, with empty fields, with a key already seen, or with a ref equal to the key,
    ids ``id_of`` rejects (raises ValueError/KeyError) and, with ``known_ids``, unknown ids are
    all collected and raised as one :class:`PairsError` of ``path:line: reason`` entries.
    """
    if split not in SPLITS:
        raise PairsError(f"split {split!r} not in {SPLITS}")
    known = None if known_ids is None else set(known_ids)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise PairsError(f"{path}: cannot read official pair list ({err})") from None
    problems: list[str] = []
    first_line: dict[str, int] = {}
    rows: list[dict] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{number}"
        if "," not in line:
            problems.append(f"{where}: no comma (expected 'key,ref1[,...,refK]')")
            continue
        fields = [f.strip() for f in line.split(",")]
        empty = [k for k, f in enumerate(fields) if not f]
        if empty:
            problems.append(f"{where}: empty field(s) at position(s) {empty} (0 = key)")
            continue
        ids: list[str] = []
        failed = False
        for field in fields:
            name = field.replace("\\", "/")
            try:
                mapped = id_of(name)
            except (KeyError, ValueError) as err:
                problems.append(f"{where}: cannot map {name!r} to an id ({err})")
                failed = True
                continue
            if not _is_id(mapped):
                problems.append(f"{where}: id_of({name!r}) gave {mapped!r}, not a non-empty str")
                failed = True
                continue
            ids.append(mapped)
        if failed:
            continue
        key, refs = ids[0], ids[1:]
        line_ok = True
        if key in first_line:
            problems.append(f"{where}: duplicate key {key!r} (first at line {first_line[key]})")
            line_ok = False
        else:
            first_line[key] = number
        self_refs = [k for k, ref in enumerate(refs, start=1) if ref == key]
        if self_refs:
            problems.append(f"{where}: ref equal to key {key!r} at rank(s) {self_refs}")
            line_ok = False
        if known is not None:
            unknown = sorted({v for v in ids if v not in known})
            if unknown:
                problems.append(f"{where}: unknown id(s) {unknown}")
                line_ok = False
        if line_ok:
            rows.extend(
                {"query": key, "exemplar": ref, "rank": k, "score": None, "split": split}
                for k, ref in enumerate(refs, start=1)
            )
    if problems:
        raise PairsError(summarize_problems(f"{path}: invalid official pair list", problems))
    return rows
