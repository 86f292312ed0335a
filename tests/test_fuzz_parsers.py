"""Fuzzing the parsers with Hypothesis: params sections, pair lists (official text and Parquet),
OpenPose candidate/subset text files and manifests.  Any input either parses to a valid object
or raises the library's own error (ConfigError, PairsError, ManifestError, ValueError) with a
message; never another exception, never a hang.  Where there is a writer, what it writes reads
back unchanged.

Runs derandomized (the `ci` profile: the same examples every run);
COCOSNET_FUZZ_PROFILE=explore draws new ones, many more."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from cocosnet.config import (
    LOSS_PRESETS,
    PRESETS,
    ConfigError,
    LossConfig,
    ModelConfig,
    Params,
    loss_config,
    model_config,
    parse_params,
)
from cocosnet.data.manifest import SCHEMA as MANIFEST_SCHEMA
from cocosnet.data.manifest import ManifestError, read_manifest
from cocosnet.data.pairs import SCHEMA as PAIRS_SCHEMA
from cocosnet.data.pairs import (
    PairsError,
    check_pairs,
    export_official,
    import_official,
    pairs_from_topk,
    read_pairs,
    write_pairs,
)
from cocosnet.formats.pose_decode import NUM_PARTS, SUBSET_COLUMNS
from cocosnet.formats.pose_render import (
    POSE_CHANNELS,
    read_openpose_txt,
    render_pose_input,
    write_openpose_txt,
)

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("explore", settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("COCOSNET_FUZZ_PROFILE", "ci"))
SCALE = 20 if os.environ.get("COCOSNET_FUZZ_PROFILE") == "explore" else 1


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE)


def _clear(err: Exception) -> None:
    """The error carries a message (not just a type)."""
    assert str(err).strip(), repr(err)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- params ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 600),
    st.integers(),  # arbitrarily large
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(sorted(PRESETS) + sorted(LOSS_PRESETS) + ["demo", "vgg19", "auto", "cpu"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _section(model: type) -> st.SearchStrategy[dict]:
    """Mostly real keys of ``model`` (so many inputs get past the unknown-key check)."""
    keys = st.one_of(st.sampled_from(sorted(model.model_fields)), st.text(max_size=8))
    return st.dictionaries(keys, VALUES, max_size=6)


SECTIONS = {name: field.annotation for name, field in Params.model_fields.items()}
PARAMS = st.one_of(
    st.fixed_dictionaries({}, optional={n: _section(m) for n, m in SECTIONS.items()}),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), VALUES, max_size=3),
    VALUES,
)


@examples(400)
@given(PARAMS)
def test_params_parse_or_raise_config_error(raw):
    try:
        params = parse_params(raw)
    except ConfigError as err:
        _clear(err)
        return
    assert isinstance(params, Params)
    # The resolved config reads back as itself (what a run saves beside its results).
    assert parse_params(params.model_dump()) == params


@examples(200)
@given(_section(ModelConfig), _section(LossConfig))
@example({"preset": "demo", "n_layers_d": 10**12}, {})  # 2 ** 1e12 would never finish
def test_model_and_loss_sections_parse_or_raise_config_error(model, loss):
    for parse, section in ((model_config, model), (loss_config, loss)):
        try:
            parse(section)
        except ConfigError as err:
            _clear(err)


# --- pair lists -----------------------------------------------------------------------------

# Characters that matter to the official text format, plus ordinary ones.
ID_CHARS = st.sampled_from(list("ab0_./\\,# \t\r\n") + ["\x85", "\u2028", "\ufeff", "é", "\x00"])
IDS = st.text(ID_CHARS, min_size=1, max_size=6)
SPLITS = st.sampled_from(["train", "val", "test", "dev", ""])


@examples(300)
@given(
    st.one_of(st.text(ID_CHARS, max_size=80), st.binary(max_size=80).map(repr)),
    st.binary(max_size=40),
    SPLITS,
    st.none() | st.lists(IDS, max_size=6),
)
def test_official_pair_list_parses_or_raises_pairs_error(scratch, text, raw, split, known):
    path = scratch / "ref.txt"
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        path.write_bytes(data)
        try:
            rows = import_official(path, split=split, known_ids=known)
        except PairsError as err:
            _clear(err)
            continue
        check_pairs(rows, known)  # what it returns is a valid pair list
        assert write_pairs(scratch / "imported.parquet", rows) == len(rows)


@examples(200)
@given(
    st.dictionaries(IDS, st.lists(IDS, min_size=1, max_size=4), min_size=1, max_size=5),
    st.sampled_from(["train", "val", "test"]),
)
def test_official_export_reads_back_unchanged_or_refuses(scratch, topk, split):
    queries = list(topk)
    try:
        rows = pairs_from_topk(queries, [topk[q] for q in queries], None, split)
    except PairsError:
        assume(False)  # self-pairs: not a pair list
    out = scratch / "exported.txt"
    try:
        export_official(out, rows)
    except PairsError as err:
        _clear(err)
        return
    back = import_official(out, split=split)
    key = lambda r: (r["query"], r["rank"])  # noqa: E731
    assert sorted(back, key=key) == sorted(rows, key=key)


_ARROW_TYPES = [pa.string(), pa.int64(), pa.int32(), pa.float64(), pa.bool_(), pa.binary()]
_ARROW_TYPES += [pa.list_(pa.int64()), pa.struct([("x", pa.int64())]), pa.null()]
_ARROW_VALUES = {
    pa.string(): st.text(ID_CHARS, max_size=5),
    pa.int64(): st.integers(-(2**63), 2**63 - 1),
    pa.int32(): st.integers(-(2**31), 2**31 - 1),
    pa.float64(): st.floats(),
    pa.bool_(): st.booleans(),
    pa.binary(): st.binary(max_size=5),
    pa.list_(pa.int64()): st.lists(st.integers(-5, 5), max_size=2),
    pa.struct([("x", pa.int64())]): st.fixed_dictionaries({"x": st.integers(-5, 5)}),
    pa.null(): st.none(),
}


@st.composite
def arrow_tables(draw, schema: pa.Schema, values: dict) -> pa.Table:
    """Tables with some of ``schema``'s columns (right or wrong types, nulls, extras)."""
    n = draw(st.integers(0, 5))
    # Half the tables have every column with its type, no nulls: they reach the row checks.
    full = draw(st.booleans())
    names = (
        schema.names if full else draw(st.lists(st.sampled_from([*schema.names, "x"]), max_size=9))
    )
    columns = {}
    for name in names:
        if name in schema.names and (full or draw(st.booleans())):
            kind = schema.field(name).type
            strategy = values.get(name, _ARROW_VALUES.get(kind))
        else:
            kind = draw(st.sampled_from(_ARROW_TYPES))
            strategy = _ARROW_VALUES[kind]
        strategy = strategy if full else strategy | st.none()
        columns[name] = pa.array(draw(st.lists(strategy, min_size=n, max_size=n)), kind)
    return pa.table(columns) if columns else pa.table({"extra": pa.array([], pa.int64())})


PAIR_VALUES = {
    "query": st.sampled_from(["a", "b", ""]),
    "exemplar": st.sampled_from(["a", "b", "c"]),
    "rank": st.integers(-1, 3),
    "score": st.floats(width=32),
    "split": SPLITS,
}


@examples(300)
@given(arrow_tables(PAIRS_SCHEMA, PAIR_VALUES), st.none() | st.just(["a", "b"]))
def test_parquet_pair_list_reads_or_raises_pairs_error(scratch, table, known):
    path = scratch / "pairs.parquet"
    pq.write_table(table, path)
    try:
        rows = read_pairs(path, known_ids=known)
    except PairsError as err:
        _clear(err)
        return
    check_pairs(rows, known)
    write_pairs(scratch / "again.parquet", rows)
    assert read_pairs(scratch / "again.parquet") == rows


@examples(150)
@given(st.data())
def test_damaged_parquet_bytes_raise_pairs_error(scratch, data):
    good = scratch / "good.parquet"
    if not good.exists():
        write_pairs(
            good, pairs_from_topk(["a", "b"], [["b", "c"], ["c", "a"]], [[1, 0], [1, 0]], "val")
        )
    blob = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    path = scratch / "damaged.parquet"
    path.write_bytes(bytes(blob[: len(blob) - cut] if data.draw(st.booleans()) else blob))
    try:
        rows = read_pairs(path)
    except PairsError as err:
        _clear(err)
        return
    check_pairs(rows)


def test_column_name_not_utf8_is_a_pairs_error(scratch):
    """Found by the test above: a damaged byte in a column name of the footer."""
    good = scratch / "names.parquet"
    write_pairs(good, pairs_from_topk(["a", "b"], [["b"], ["a"]], [[1], [1]], "val"))
    blob = bytearray(good.read_bytes())
    at = blob.find(b"\x18\x04rank") + 2  # SchemaElement.name (thrift field 4) of "rank"
    assert at > 1
    blob[at] = 0x80
    path = scratch / "names_damaged.parquet"
    path.write_bytes(bytes(blob))
    with pytest.raises(PairsError, match="not a readable Parquet pair list"):
        read_pairs(path)


# --- manifests ------------------------------------------------------------------------------

MANIFEST_VALUES = {
    "id": st.sampled_from(["s0", "s1", ""]),
    "split": SPLITS,
    "image": st.sampled_from(["images/a.png", "/etc/passwd", "../x.png", "a\x00b", "", "."]),
    "label": st.sampled_from(["labels/a.png", "..", "images/../../x"]),
    "width": st.integers(-1, 3),
    "height": st.integers(-1, 3),
    "sha256": st.sampled_from(["0" * 64, "g" * 64, "abc"]),
}


@examples(300)
@given(arrow_tables(MANIFEST_SCHEMA, MANIFEST_VALUES), st.booleans())
def test_manifest_reads_or_raises_manifest_error(scratch, table, with_root):
    root = scratch / "root"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "a.png").write_bytes(b"x")
    path = scratch / "manifest.parquet"
    pq.write_table(table, path)
    try:
        rows = read_manifest(path, root if with_root else None)
    except ManifestError as err:
        _clear(err)
        return
    assert all(set(r) == set(MANIFEST_SCHEMA.names) for r in rows)


# --- OpenPose text files --------------------------------------------------------------------

TOKENS = st.one_of(
    st.floats(-100, 100).map(repr),
    st.sampled_from(["-1", "0", "1", "2", "3.5", "-0", "1e309", "nan", "inf", "-inf", "1_0"]),
    st.sampled_from(["x", "#", "0x10", "١", "1e400", "+", "", "1e18", "-1e18", "3e9"]),
    st.floats(allow_nan=False, width=32).map(repr),
    st.integers(-3, 30).map(str),
)
LINE = st.lists(TOKENS, min_size=0, max_size=SUBSET_COLUMNS + 1).map(" ".join)


@st.composite
def openpose_files(draw) -> tuple[str, str]:
    """Candidate / subset texts: mostly right column counts, with edits."""
    n = draw(st.integers(0, 4))
    coord = st.one_of(st.floats(-100, 100).map(repr), st.sampled_from(["1e18", "-3e9", "nan"]))
    cand = [" ".join([*draw(st.lists(coord, min_size=3, max_size=3)), str(i)]) for i in range(n)]
    parts = st.sampled_from(["-1", "-1", *map(str, range(n + 1))])  # n: one past the end
    rows = [[draw(parts) for _ in range(NUM_PARTS)] for _ in range(draw(st.integers(0, 2)))]
    subset = [" ".join([*r, "1.0", draw(st.sampled_from(["3", "0", "-1"]))]) for r in rows]
    # A damaged line in a quarter of the files; the others reach the range checks and render.
    if draw(st.integers(0, 3)) == 0:
        lines = draw(st.sampled_from([cand, subset]))
        lines.insert(draw(st.integers(0, len(lines))), draw(LINE))
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n# c\n", "\x0b"]))
    return sep.join(cand), sep.join(subset)


@examples(300)
@given(openpose_files(), st.binary(max_size=16))
def test_openpose_txt_reads_or_raises_value_error(scratch, texts, junk):
    directory = scratch / "pose"
    directory.mkdir(exist_ok=True)
    for raw in (tuple(t.encode() for t in texts), (junk, texts[1].encode())):
        (directory / "p_candidate.txt").write_bytes(raw[0])
        (directory / "p_subset.txt").write_bytes(raw[1])
        try:
            candidate, subset = read_openpose_txt(directory, "p")
        except ValueError as err:
            _clear(err)
            continue
        assert candidate.shape[1] == 4 and subset.shape[1] == SUBSET_COLUMNS
        assert np.isfinite(candidate).all() and np.isfinite(subset).all()
        try:
            pose = render_pose_input(candidate, subset, 24, 20)
        except ValueError as err:
            _clear(err)
            continue
        assert pose.shape == (24, 20, POSE_CHANNELS) and pose.dtype == np.uint8


FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@st.composite
def openpose_arrays(draw) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 5))
    candidate = np.array(
        [[draw(FINITE), draw(FINITE), draw(FINITE), float(i)] for i in range(n)], np.float64
    ).reshape(n, 4)
    m = draw(st.integers(0, 3))
    parts = st.integers(-1, n - 1)
    subset = np.array(
        [
            [
                *(float(draw(parts)) for _ in range(NUM_PARTS)),
                draw(FINITE),
                draw(st.integers(0, 18)),
            ]
            for _ in range(m)
        ],
        np.float64,
    ).reshape(m, SUBSET_COLUMNS)
    return candidate, subset


@examples(150)
@given(openpose_arrays())
def test_openpose_txt_round_trip(scratch, arrays):
    candidate, subset = arrays
    directory = scratch / "round"
    write_openpose_txt(directory, "r", candidate, subset)
    back_candidate, back_subset = read_openpose_txt(directory, "r")
    np.testing.assert_array_equal(back_candidate, candidate)
    np.testing.assert_array_equal(back_subset, subset)
    assert all(math.isfinite(v) for v in back_candidate.ravel())
