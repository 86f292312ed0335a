"""OpenPose preprocessing: decoding, txt files, the 20-channel input, the cv2.dnn wrapper, stage."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from cocosnet.data.manifest import read_manifest
from cocosnet.formats.pose_render import COLORS
from cocosnet.preprocess.pose import (
    KEYPOINTS_FILE,
    LIMBS,
    PAF_CHANNELS,
    OpenPoseBody,
    decode,
    keypoints_table,
    read_openpose_txt,
    render_pose_input,
    split_outputs,
    write_openpose_txt,
)
from cocosnet.weights import REGISTRY, add
from stages.pose import main as pose_stage
from stages.prepare import main as prepare_stage

# A stick figure (x, y) per COCO part, about 40 x 90 px.
TEMPLATE = np.array(
    [
        (20, 12), (20, 24), (12, 24), (8, 38), (6, 52), (28, 24), (32, 38), (34, 52), (15, 56),
        (14, 76), (13, 96), (25, 56), (26, 76), (27, 96), (17, 9), (23, 9), (14, 11), (26, 11),
    ]
)  # fmt: skip
HEIGHT, WIDTH = 110, 112


def person(dx: int, dy: int = 4) -> np.ndarray:
    return TEMPLATE + np.array([dx, dy])


def synthetic_maps(people, flipped=(), height=HEIGHT, width=WIDTH, half_width=1.5):
    """Gaussian heatmap peaks at the joints and unit-vector PAFs along each limb."""
    heat = np.zeros((19, height, width))
    paf = np.zeros((38, height, width))
    yy, xx = np.mgrid[:height, :width].astype(float)
    for joints in people:
        for part, (x, y) in enumerate(joints):
            peak = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
            heat[part] = np.maximum(heat[part], peak)
        for k, (a, b) in enumerate(LIMBS):
            (xa, ya), (xb, yb) = joints[a], joints[b]
            vx, vy = xb - xa, yb - ya
            length2 = float(vx * vx + vy * vy)
            t = np.clip(((xx - xa) * vx + (yy - ya) * vy) / length2, 0, 1)
            near = np.hypot(xx - (xa + t * vx), yy - (ya + t * vy)) <= half_width
            sign = -1.0 if k in flipped else 1.0
            cx, cy = (c - 19 for c in PAF_CHANNELS[k])
            paf[cx][near] = sign * vx / np.sqrt(length2)
            paf[cy][near] = sign * vy / np.sqrt(length2)
    heat[18] = np.clip(1 - heat[:18].max(axis=0), 0, 1)
    return heat.astype(np.float32), paf.astype(np.float32)


def joints_of(candidate, row):
    return {p: tuple(candidate[int(i), :2]) for p, i in enumerate(row[:18]) if i >= 0}


# ---------------------------------------------------------------- decoding


def test_decode_one_person_recovers_every_joint():
    joints = person(30)
    candidate, subset = decode(*synthetic_maps([joints]))
    assert candidate.shape == (18, 4) and subset.shape == (1, 20)
    assert np.array_equal(candidate[:, 3], np.arange(18))  # running ids = rows
    assert joints_of(candidate, subset[0]) == {
        p: tuple(map(float, j)) for p, j in enumerate(joints)
    }
    assert subset[0, 19] == 18
    np.testing.assert_allclose(candidate[:, 2], 1.0, atol=1e-6)  # unsmoothed heatmap value


def test_decode_two_people_keeps_each_persons_parts_together():
    people = [person(4), person(64, dy=8)]
    candidate, subset = decode(*synthetic_maps(people))
    assert subset.shape == (2, 20)
    found = sorted((joints_of(candidate, row) for row in subset), key=lambda j: j[0][0])
    for got, joints in zip(found, people, strict=True):
        assert got == {p: tuple(map(float, j)) for p, j in enumerate(joints)}
    assert (subset[:, 19] == 18).all()


def test_a_limb_whose_paf_points_the_wrong_way_is_not_connected():
    k = LIMBS.index((3, 4))  # r_elbow -> r_wrist, the wrist's only limb
    candidate, subset = decode(*synthetic_maps([person(30)], flipped={k}))
    assert len(subset) == 1 and subset[0, 4] == -1 and subset[0, 19] == 17
    assert subset[0, 3] >= 0  # the elbow is still there
    assert len(candidate) == 18  # the wrist was detected, just not attached


def test_decode_with_nothing_detected_and_too_few_parts():
    candidate, subset = decode(np.zeros((19, 20, 20)), np.zeros((38, 20, 20)))
    assert candidate.shape == (0, 4) and subset.shape == (0, 20)
    heat, paf = synthetic_maps([person(30)])
    heat[2:] = 0  # only nose and neck: a 2-part person is dropped
    candidate, subset = decode(heat, paf)
    assert len(candidate) == 2 and subset.shape == (0, 20)
    with pytest.raises(ValueError, match="19 x H x W"):
        decode(np.zeros((5, 8, 8)), np.zeros((38, 8, 8)))


# ---------------------------------------------------------------- txt files and table


def test_txt_files_round_trip_and_keypoint_rows(tmp_path):
    candidate, subset = decode(*synthetic_maps([person(4), person(64)]))
    cand_path, subset_path = write_openpose_txt(tmp_path, "img_01", candidate, subset)
    assert cand_path.name == "img_01_candidate.txt" and subset_path.name == "img_01_subset.txt"
    np.testing.assert_array_equal(np.loadtxt(cand_path), candidate)  # numpy-readable as official
    got_c, got_s = read_openpose_txt(tmp_path, "img_01")
    np.testing.assert_array_equal(got_c, candidate)
    np.testing.assert_array_equal(got_s, subset)
    rows = keypoints_table("img_01", candidate, subset)
    assert len(rows) == 36 and set(rows[0]) == {"id", "person", "part", "x", "y", "score"}
    assert {(r["person"], r["part"]) for r in rows} == {(p, q) for p in (0, 1) for q in range(18)}
    # One person and an empty result also round-trip (np.loadtxt would give 1-D / empty).
    write_openpose_txt(tmp_path, "one", candidate, subset[:1])
    assert read_openpose_txt(tmp_path, "one")[1].shape == (1, 20)
    write_openpose_txt(tmp_path, "none", np.zeros((0, 4)), np.zeros((0, 20)))
    c, s = read_openpose_txt(tmp_path, "none")
    assert c.shape == (0, 4) and s.shape == (0, 20)


@pytest.mark.parametrize(
    ("which", "text", "message"),
    [
        ("candidate", "1 2 0.5 0\n3 4 0.5\n", r"_candidate\.txt:2: expected 4 numbers, got 3"),
        ("candidate", "1 2 0.5 0\n3 4 x 1\n", r"_candidate\.txt:2: not a number"),
        ("candidate", "1 2 0.5 -1\n", r"_candidate\.txt:1: id -1 is not a non-negative integer"),
        ("subset", " ".join(["0"] * 19) + "\n", r"_subset\.txt:1: expected 20 numbers, got 19"),
        ("subset", "\n" + " ".join(["2"] + ["-1"] * 17 + ["1", "1"]) + "\n", r":2: part 0 index 2"),
        ("subset", " ".join(["0.5"] + ["-1"] * 17 + ["1", "1"]) + "\n", r":1: part 0 index 0\.5"),
        ("subset", " ".join(["0"] + ["-1"] * 17 + ["nan", "1"]) + "\n", r":1: non-finite"),
    ],
)
def test_malformed_txt_files_name_the_file_and_line(tmp_path, which, text, message):
    (tmp_path / "a_candidate.txt").write_text("1 2 0.5 0\n5 6 0.9 1\n")
    (tmp_path / "a_subset.txt").write_text(" ".join(["0", "1"] + ["-1"] * 16 + ["1.4", "2"]))
    (tmp_path / f"a_{which}.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_openpose_txt(tmp_path, "a")


def test_missing_txt_file_and_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="a_candidate.txt: file not found"):
        read_openpose_txt(tmp_path, "a")
    with pytest.raises(ValueError, match="subset row 0, part 0: index 5"):
        write_openpose_txt(tmp_path, "b", np.zeros((2, 4)), np.array([[5] + [-1] * 19]))
    with pytest.raises(ValueError, match="N x 4"):
        keypoints_table("b", np.zeros((2, 3)), np.zeros((0, 20)))


# ---------------------------------------------------------------- the 20-channel input


def _beyond(joints, a, b, step=3):
    """A pixel ``step`` px past joint b, continuing the limb a -> b (inside b's disc only)."""
    (xa, ya), (xb, yb) = joints[a], joints[b]
    v = np.array([xb - xa, yb - ya], float)
    x, y = np.array([xb, yb]) + step * v / np.linalg.norm(v)
    return int(round(y)), int(round(x))


def test_render_pose_input_colours_and_distance_channels():
    joints = person(30)
    candidate, subset = decode(*synthetic_maps([joints]))
    pose = render_pose_input(candidate, subset, HEIGHT, WIDTH)
    assert pose.shape == (HEIGHT, WIDTH, 20) and pose.dtype == np.uint8
    for a, b in [(3, 4), (6, 7), (9, 10), (12, 13)]:  # wrists and ankles: only one limb each
        y, x = _beyond(joints, a, b)
        assert tuple(pose[y, x, :3]) == tuple(reversed(COLORS[b])), (a, b)  # BGR drawn -> RGB
    assert not pose[0, 0, :3].any()  # background stays black
    for k in range(17):
        a, b = LIMBS[k]
        mid = (joints[a] + joints[b]) // 2
        channel = pose[:, :, 3 + k]
        assert channel[mid[1], mid[0]] == 0 and channel[joints[a][1], joints[a][0]] == 0
        assert channel[HEIGHT - 1, WIDTH - 1] > 0 and channel.max() <= 255
    # A missing wrist: its limb channel is all 255 and nothing is drawn past the elbow.
    subset = subset.copy()
    subset[0, 4] = -1
    pose = render_pose_input(candidate, subset, HEIGHT, WIDTH)
    assert (pose[:, :, 3 + LIMBS.index((3, 4))] == 255).all()
    y, x = _beyond(joints, 3, 4)
    assert not pose[y, x, :3].any()
    empty = render_pose_input(np.zeros((0, 4)), np.zeros((0, 20)), 16, 12)
    assert (
        empty.shape == (16, 12, 20) and not empty[:, :, :3].any() and (empty[:, :, 3:] == 255).all()
    )


def test_render_pose_input_draws_every_person():
    people = [person(4), person(64)]
    candidate, subset = decode(*synthetic_maps(people))
    pose = render_pose_input(candidate, subset, HEIGHT, WIDTH)
    k = LIMBS.index((9, 10))
    for joints in people:
        mid = (joints[9] + joints[10]) // 2
        assert pose[mid[1], mid[0], 3 + k] == 0


# ---------------------------------------------------------------- the cv2.dnn network


class StubNet:
    """Mimics cv2.dnn.Net: a stride-8 'network' whose output channel c is c + mean-pooled blue."""

    def __init__(self, names=("net_output",)):
        self.names, self.inputs = names, []

    def getUnconnectedOutLayersNames(self):  # noqa: N802 - cv2 API
        return self.names

    def setInput(self, blob):  # noqa: N802 - cv2 API
        self.inputs.append(blob)

    def forward(self, names):
        blob = self.inputs[-1]
        _, _, h, w = blob.shape
        pooled = blob[0, 0].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))
        out = np.arange(57, dtype=np.float32)[:, None, None] + pooled[None]
        if len(names) == 1:
            return (out[None],)
        return (out[None, 19:], out[None, :19])  # L1 (PAFs), L2 (heatmaps), as the port's


@pytest.mark.parametrize("names", [("net_output",), ("Mconv7_stage6_L1", "Mconv7_stage6_L2")])
def test_openpose_body_pre_and_post_processing(names):
    rgb = np.zeros((50, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 128  # blue 128 -> 0 in the blob, the same as the padding
    net = StubNet(names)
    body = OpenPoseBody(net=net, scales=(0.5, 1.0))
    heat, paf = body(rgb)
    assert heat.shape == (19, 50, 30) and paf.shape == (38, 50, 30)
    assert heat.dtype == paf.dtype == np.float32
    # Each scale: resized by s * 368 / H, padded bottom/right to a multiple of 8 with 128.
    assert [b.shape for b in net.inputs] == [(1, 3, 184, 112), (1, 3, 368, 224)]
    blob = net.inputs[0]
    assert np.allclose(blob[0, 2, :, :110], 255 / 256 - 0.5)  # BGR order, x / 256 - 0.5
    assert np.allclose(blob[0, 1, :, :110], -0.5) and np.allclose(blob[0, 0, :, :110], 0.0)
    assert np.allclose(blob[0, :, :, 110:], 0.0)  # pad value 128 -> 128 / 256 - 0.5
    expected = np.arange(57)[:, None, None] + 0.0
    np.testing.assert_allclose(heat, expected[:19].repeat(50, 1).repeat(30, 2), atol=0.02)
    np.testing.assert_allclose(paf, expected[19:].repeat(50, 1).repeat(30, 2), atol=0.02)


def test_split_outputs_accepts_a_mapping_and_refuses_wrong_shapes():
    heat, paf = np.ones((1, 19, 4, 5)), np.zeros((1, 38, 4, 5))
    h, p = split_outputs({"Mconv7_stage6_L1": paf, "Mconv7_stage6_L2": heat})
    assert h.shape == (19, 4, 5) and p.shape == (38, 4, 5) and h.all() and not p.any()
    with pytest.raises(ValueError, match="57-channel"):
        split_outputs(np.zeros((1, 40, 4, 5)))


# Minimal protobuf wire-format encoder for caffe.NetParameter (field numbers from caffe.proto).
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array: np.ndarray) -> bytes:
    shape = _field(1, b"".join(_varint(d) for d in array.shape))  # BlobShape.dim, packed
    data = struct.pack(f"<{array.size}f", *array.astype(np.float32).ravel())
    return _field(7, shape) + _field(5, data)  # BlobProto.shape = 7, BlobProto.data = 5


def caffemodel_bytes(layers: dict[str, list[np.ndarray]]) -> bytes:
    """NetParameter{name = 1, layer = 100 {name = 1, type = 2, blobs = 7}}."""
    body = _field(1, b"tiny")
    for name, blobs in layers.items():
        layer = _field(1, name.encode()) + _field(2, b"Convolution")
        layer += b"".join(_field(7, _blob(b)) for b in blobs)
        body += _field(100, layer)
    return body


TINY_PROTOTXT = (
    """name: "tiny"
input: "image"
input_dim: 1
input_dim: 3
input_dim: 1
input_dim: 1
layer { name: "conv1" type: "Convolution" bottom: "image" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 1 } }
"""
    + "".join(
        f"""layer {{ name: "pool{i}" type: "Pooling" bottom: "{src}" top: "pool{i}"
  pooling_param {{ pool: AVE kernel_size: 2 stride: 2 }} }}
"""
        for i, src in ((1, "conv1"), (2, "pool1"), (3, "pool2"))
    )
    + """layer { name: "Mconv7_stage6_L1" type: "Convolution" bottom: "pool3"
  top: "Mconv7_stage6_L1" convolution_param { num_output: 38 kernel_size: 1 } }
layer { name: "Mconv7_stage6_L2" type: "Convolution" bottom: "pool3" top: "Mconv7_stage6_L2"
  convolution_param { num_output: 19 kernel_size: 1 } }
layer { name: "concat_stage7" type: "Concat" bottom: "Mconv7_stage6_L2"
  bottom: "Mconv7_stage6_L1" top: "net_output" concat_param { axis: 1 } }
"""
)


def tiny_model(directory, random=False):
    """Tiny stride-8 Caffe net: heatmaps = 8x8-mean of the blue input, PAFs = 0.25."""
    rng = np.random.default_rng(0)
    heat_w = np.zeros((19, 3, 1, 1), np.float32)
    heat_w[:, 0] = 1.0  # BGR blob: channel 0 is blue
    layers = {
        "conv1": [np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), np.zeros(3, np.float32)],
        "Mconv7_stage6_L1": [np.zeros((38, 3, 1, 1), np.float32), np.full(38, 0.25, np.float32)],
        "Mconv7_stage6_L2": [heat_w, np.zeros(19, np.float32)],
    }
    if random:
        layers = {
            k: [rng.normal(size=b.shape).astype(np.float32) for b in v] for k, v in layers.items()
        }
    prototxt, caffemodel = directory / "tiny.prototxt", directory / "tiny.caffemodel"
    prototxt.write_text(TINY_PROTOTXT)
    caffemodel.write_bytes(caffemodel_bytes(layers))
    return prototxt, caffemodel


def test_openpose_body_runs_a_caffe_model_through_cv2_dnn(tmp_path):
    body = OpenPoseBody(*tiny_model(tmp_path), scales=(0.5,))
    assert body.output_names == ["concat_stage7"]  # cv2 names outputs by layer
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[16:25, 26:35, 2] = 255  # a blue square centred at (30, 20)
    heat, paf = body(rgb)
    assert heat.shape == (19, 48, 64) and paf.shape == (38, 48, 64)
    np.testing.assert_allclose(paf, 0.25, atol=1e-4)  # PAFs come second in net_output
    y, x = np.unravel_index(np.argmax(heat[0]), heat[0].shape)
    assert abs(x - 30) <= 2 and abs(y - 20) <= 2  # the stride-8 output maps back onto the image
    assert heat[0, 0, 0] == pytest.approx(-0.5, abs=0.01)  # black: 0 / 256 - 0.5
    assert heat[0, y, x] > 0
    # A random-init net of the same shape also runs at several scales.
    heat, paf = OpenPoseBody(*tiny_model(tmp_path, random=True), scales=(0.5, 1.0))(rgb)
    assert heat.shape == (19, 48, 64) and paf.shape == (38, 48, 64) and np.isfinite(heat).all()


# ---------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pose")
    params = tmp / "params.yaml"
    params.write_text(
        f"data:\n  root: {tmp / 'data'}\n  demo: {{n_train: 3, n_val: 1, size: 32, seed: 3}}\n"
    )
    prepare_stage("demo", str(params))
    return params, tmp / "data"


def test_pose_stage_writes_files_per_image_and_a_keypoint_table(demo_data, tmp_path, capsys):
    params, root = demo_data
    weights = tmp_path / "weights"
    prototxt, caffemodel = tiny_model(tmp_path, random=True)
    add("openpose_body_prototxt", prototxt, weights)
    add("openpose_body_caffemodel", caffemodel, weights)
    out = root / "demo_pose"
    out.mkdir(exist_ok=True)
    (out / "gone_candidate.txt").write_text("")
    pose_stage("demo", str(params), str(weights))
    assert '"images": 4' in capsys.readouterr().out
    rows = read_manifest(root / "demo" / "manifest.parquet")
    for row in rows:
        candidate, subset = read_openpose_txt(out, row["id"])
        with np.load(out / f"{row['id']}.npz") as npz:
            pose = npz["pose"]
        assert pose.shape == (row["height"], row["width"], 20) and pose.dtype == np.uint8
    table = pq.read_table(out / KEYPOINTS_FILE)
    assert table.column_names == ["id", "person", "part", "x", "y", "score"]
    assert not (out / "gone_candidate.txt").exists()


def test_pose_stage_without_weights_names_the_missing_file(demo_data, tmp_path):
    params, _ = demo_data
    with pytest.raises(SystemExit, match=REGISTRY["openpose_body_prototxt"].filename) as err:
        pose_stage("demo", str(params), str(tmp_path / "no_weights"))
    assert "missing pretrained file" in str(err.value)
    with pytest.raises(SystemExit, match="run prepare@other first"):
        pose_stage("other", str(params), str(tmp_path))


def test_cv2_has_the_caffe_importer():
    assert hasattr(cv2.dnn, "readNetFromCaffe")
