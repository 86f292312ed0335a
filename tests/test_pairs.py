"""Exemplar pair lists (Parquet + official text format) and the training exemplar sampler."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocosnet.data.pairs import (
    SCHEMA,
    PairsError,
    export_official,
    import_official,
    pairs_from_topk,
    read_pairs,
    write_pairs,
)
from cocosnet.training.exemplars import ExemplarSampler

IDS = ["a", "b", "c", "d"]


def _rows():
    return pairs_from_topk(
        ["a", "b"], [["b", "c", "d"], ["a", "d", "c"]], [[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]], "train"
    )


def _triples(rows):
    return sorted((r["query"], r["exemplar"], r["rank"]) for r in rows)


def _row(query, exemplar, rank, split="train", score=None):
    return {"query": query, "exemplar": exemplar, "rank": rank, "score": score, "split": split}


def test_pairs_from_topk_ranks_and_scores():
    rows = _rows()
    assert [(r["query"], r["exemplar"], r["rank"]) for r in rows[:3]] == [
        ("a", "b", 1),
        ("a", "c", 2),
        ("a", "d", 3),
    ]
    assert rows[4]["score"] == pytest.approx(0.7)
    assert all(r["split"] == "train" for r in rows)
    no_scores = pairs_from_topk(["a"], [["b"]], None, "val")
    assert no_scores == [_row("a", "b", 1, "val")]
    with pytest.raises(PairsError, match="self-pair"):
        pairs_from_topk(["a"], [["a", "b"]], None, "train")
    with pytest.raises(PairsError, match="2 query ids but 1"):
        pairs_from_topk(["a", "b"], [["c"]], None, "train")


def test_parquet_round_trip(tmp_path):
    rows = _rows()
    path = tmp_path / "sub" / "pairs.parquet"
    assert write_pairs(path, rows) == 6
    back = read_pairs(path, known_ids=IDS)
    assert _triples(back) == _triples(rows)
    assert pq.read_schema(path).field("rank").type == pa.int32()
    assert back[0]["score"] == pytest.approx(0.9, abs=1e-6)
    assert not list(tmp_path.glob("sub/.*.tmp"))  # atomic write leaves no temporary files


def test_parquet_nullable_score(tmp_path):
    rows = [_row("a", "b", 1), _row("a", "c", 2)]
    write_pairs(tmp_path / "p.parquet", rows)
    assert [r["score"] for r in read_pairs(tmp_path / "p.parquet")] == [None, None]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([_row("a", "b", 1), _row("a", "c", 3)], r"rows \[0, 1\] \(query 'a'\).*missing \[2\]"),
        (
            [_row("a", "b", 1), _row("a", "c", 1)],
            r"row 1 .*duplicate \(query, rank\), first at row 0",
        ),
        ([_row("a", "b", 1), _row("b", "b", 1)], r"row 1 .*self-pair"),
        ([_row("a", "b", 1), _row("a", "c", 2, split="dev")], r"row 1 .*split 'dev'"),
        ([_row("a", "b", 0)], r"row 0 .*rank must be an integer >= 1"),
    ],
)
def test_write_validation_reports_rows(tmp_path, rows, expected):
    with pytest.raises(PairsError, match=expected):
        write_pairs(tmp_path / "p.parquet", rows)
    assert not (tmp_path / "p.parquet").exists()


def test_unknown_ids_reported_with_rows(tmp_path):
    rows = [_row("a", "b", 1), _row("a", "x", 2), _row("y", "a", 1)]
    with pytest.raises(PairsError) as err:
        write_pairs(tmp_path / "p.parquet", rows, known_ids=IDS)
    text = str(err.value)
    assert "2 problem(s)" in text
    assert "row 1 (query 'a', rank 2): unknown id(s) ['x']" in text
    assert "row 2 (query 'y', rank 1): unknown id(s) ['y']" in text
    # Written without known_ids, the same rows are refused on read with known_ids.
    write_pairs(tmp_path / "p.parquet", rows)
    with pytest.raises(PairsError, match=r"(?s)p\.parquet: .*row 1 .*unknown id"):
        read_pairs(tmp_path / "p.parquet", known_ids=IDS)


def test_read_validates_stored_table(tmp_path):
    table = pa.Table.from_pylist([_row("a", "b", 1), _row("a", "c", 1)], schema=SCHEMA)
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(PairsError, match=r"(?s)bad\.parquet: .*row 1 .*duplicate"):
        read_pairs(tmp_path / "bad.parquet")
    pq.write_table(table.drop(["score"]), tmp_path / "cols.parquet")
    with pytest.raises(PairsError, match=r"missing column\(s\) \['score'\]"):
        read_pairs(tmp_path / "cols.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(PairsError, match="not a readable Parquet"):
        read_pairs(tmp_path / "junk.parquet")


def test_official_round_trip(tmp_path):
    rows = _rows()
    path = tmp_path / "ref.txt"
    assert export_official(path, list(reversed(rows))) == 2
    assert path.read_text().splitlines() == ["a,b,c,d", "b,a,d,c"]
    back = import_official(path, split="train", known_ids=IDS)
    by_rank = sorted((r["query"], r["rank"], r["exemplar"]) for r in rows)
    assert [(r["query"], r["rank"], r["exemplar"]) for r in back] == by_rank
    assert all(r["score"] is None and r["split"] == "train" for r in back)


def test_official_import_skips_blank_lines_and_strips(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("\n  a , b ,c  \n\n\nb,a\n")
    rows = import_official(path, split="test")
    assert _triples(rows) == [("a", "b", 1), ("a", "c", 2), ("b", "a", 1)]


def test_official_malformed_lines_reported_together(tmp_path):
    path = tmp_path / "ref.txt"
    lines = [
        "a,b,c",  # 1 ok
        "lonely",  # 2 no comma
        "b,,c",  # 3 empty field
        "a,c",  # 4 duplicate key
        "c,d,c",  # 5 ref equal to key
        "",  # 6 blank: skipped
        "d,a,",  # 7 trailing empty field
        "b,a",  # 8 ok
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PairsError) as err:
        import_official(path, split="train")
    text = str(err.value)
    assert "5 problem(s)" in text
    for number, reason in [
        (2, "no comma"),
        (3, "empty field"),
        (4, "duplicate key 'a' (first at line 1)"),
        (5, "ref equal to key 'c' at rank(s) [2]"),
        (7, "empty field"),
    ]:
        assert f"{path}:{number}: {reason}" in text
    assert f"{path}:1:" not in text and f"{path}:8:" not in text


def test_official_many_problems_are_truncated(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("".join(f"q{i}\n" for i in range(25)))
    with pytest.raises(PairsError) as err:
        import_official(path, split="train")
    text = str(err.value)
    assert "25 problem(s)" in text and "... and 5 more" in text
    assert f"{path}:20:" in text and f"{path}:21:" not in text


def test_official_unknown_ids_reported_with_lines(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("a,b\nb,zz\nyy,a,c\n")
    with pytest.raises(PairsError) as err:
        import_official(path, split="train", known_ids=IDS)
    text = str(err.value)
    assert f"{path}:2: unknown id(s) ['zz']" in text
    assert f"{path}:3: unknown id(s) ['yy']" in text
    assert f"{path}:1:" not in text


def test_official_backslash_paths_with_id_of(tmp_path):
    path = tmp_path / "deepfashion_ref.txt"
    path.write_text(
        "img\\WOMEN\\Dresses\\id_00000244\\02_1_front.jpg,"
        "img\\WOMEN\\Dresses\\id_00000244\\02_2_side.jpg,"
        "img\\MEN\\Pants\\id_00000001\\01_1_front.jpg\n"
    )
    seen = []

    def id_of(name: str) -> str:
        seen.append(name)
        return name.removeprefix("img/").removesuffix(".jpg").replace("/", "__")

    known = {
        "WOMEN__Dresses__id_00000244__02_1_front",
        "WOMEN__Dresses__id_00000244__02_2_side",
        "MEN__Pants__id_00000001__01_1_front",
    }
    rows = import_official(path, split="train", known_ids=known, id_of=id_of)
    assert seen[0] == "img/WOMEN/Dresses/id_00000244/02_1_front.jpg"
    assert _triples(rows) == [
        ("WOMEN__Dresses__id_00000244__02_1_front", "MEN__Pants__id_00000001__01_1_front", 2),
        ("WOMEN__Dresses__id_00000244__02_1_front", "WOMEN__Dresses__id_00000244__02_2_side", 1),
    ]
    # Without id_of the normalised paths themselves are the ids.
    plain = import_official(path, split="train")
    assert plain[0]["query"] == "img/WOMEN/Dresses/id_00000244/02_1_front.jpg"


def test_official_id_of_failures_reported(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("a,b\nb,missing\n")
    mapping = {"a": "A", "b": "B"}
    with pytest.raises(PairsError, match=r"ref\.txt:2: cannot map 'missing'"):
        import_official(path, split="train", id_of=mapping.__getitem__)


def test_official_bad_split_and_export_commas(tmp_path):
    with pytest.raises(PairsError, match="split 'dev'"):
        import_official(tmp_path / "x.txt", split="dev")
    with pytest.raises(PairsError, match="comma"):
        export_official(tmp_path / "x.txt", [_row("a,1", "b", 1)])
    assert not (tmp_path / "x.txt").exists()


# --- sampler -----------------------------------------------------------------------------


def _sampler_rows():
    return pairs_from_topk(["q", "r"], [["e1", "e2", "e3"], ["f1"]], None, "train")


def test_sampler_frequencies_match_probabilities():
    sampler = ExemplarSampler(_sampler_rows(), p_hard=0.2, p_top1=0.5, p_self=0.3, seed=1)
    n = 20_000
    counts = {"hard": 0, "top1": 0, "self": 0}
    for _ in range(n):
        exemplar, kind = sampler.choose("q")
        counts[kind] += 1
        expected = {"hard": "e3", "top1": "e1", "self": "q"}[kind]
        assert exemplar == expected
    assert abs(counts["hard"] / n - 0.2) < 0.01
    assert abs(counts["top1"] / n - 0.5) < 0.01
    assert abs(counts["self"] / n - 0.3) < 0.01


def test_sampler_other_probabilities_and_ranks():
    rng = np.random.default_rng(0)
    only_hard = ExemplarSampler(_sampler_rows(), p_hard=1.0, p_top1=0.0, p_self=0.0)
    assert {only_hard.choose("q", rng) for _ in range(50)} == {("e3", "hard")}
    only_top1 = ExemplarSampler(_sampler_rows(), p_hard=0.0, p_top1=1.0, p_self=0.0)
    assert {only_top1.choose("q", rng) for _ in range(50)} == {("e1", "top1")}
    # A single exemplar is both top-1 and last-ranked.
    assert only_hard.choose("r", rng) == ("f1", "hard")
    # Rows out of rank order still give the right ranks.
    shuffled = list(reversed(_sampler_rows()))
    sampler = ExemplarSampler(shuffled)
    assert sampler.top1("q") == "e1" and sampler.hard("q") == "e3"


@pytest.mark.parametrize(
    "probs",
    [
        {"p_hard": 0.2, "p_top1": 0.5, "p_self": 0.4},
        {"p_hard": 0.5, "p_top1": 0.5, "p_self": 0.1},
        {"p_hard": -0.1, "p_top1": 0.8, "p_self": 0.3},
        {"p_hard": float("nan"), "p_top1": 0.5, "p_self": 0.3},
    ],
)
def test_sampler_rejects_bad_probabilities(probs):
    with pytest.raises(ValueError, match="p_hard") as err:
        ExemplarSampler(_sampler_rows(), **probs)
    assert "p_top1" in str(err.value) and "p_self" in str(err.value)


def test_sampler_accepts_sum_within_tolerance():
    ExemplarSampler(_sampler_rows(), p_hard=0.2, p_top1=0.5, p_self=0.3 + 5e-7)


def test_sampler_query_without_pairs_is_self():
    sampler = ExemplarSampler(_sampler_rows(), p_hard=1.0, p_top1=0.0, p_self=0.0)
    assert "nobody" not in sampler and "q" in sampler
    assert {sampler.choose("nobody") for _ in range(20)} == {("nobody", "self")}
    empty = ExemplarSampler([])
    assert empty.choose("q") == ("q", "self")


def test_sampler_deterministic_with_seed():
    queries = ["q", "r", "nobody"] * 100
    a = ExemplarSampler(_sampler_rows(), seed=7)
    b = ExemplarSampler(_sampler_rows(), seed=7)
    c = ExemplarSampler(_sampler_rows(), seed=8)
    draws_a = [a.choose(q) for q in queries]
    assert draws_a == [b.choose(q) for q in queries]
    assert draws_a != [c.choose(q) for q in queries]
    # An explicit generator gives the same stream as the seeded one.
    rng = np.random.default_rng(7)
    d = ExemplarSampler(_sampler_rows(), seed=123)
    assert [d.choose(q, rng) for q in queries] == draws_a


def test_the_pair_reader_refuses_rows_the_sampler_would_get(tmp_path):
    # Validated once, where a pair list is read or written; the sampler trusts its rows.
    with pytest.raises(PairsError, match="missing"):
        write_pairs(tmp_path / "pairs.parquet", [_row("q", "e1", 1), _row("q", "e3", 3)])
