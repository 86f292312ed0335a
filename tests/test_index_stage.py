import numpy as np
import pytest
import torch
import yaml

from cocosnet.config import IndexConfig
from cocosnet.data.pairs import read_pairs
from cocosnet.io import write_image
from cocosnet.models.vgg import VGG19
from cocosnet.retrieval import build as build_module
from cocosnet.retrieval.embeddings import layout_embedding
from stages.index import main as index_stage
from stages.prepare import main as prepare_stage


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("index")
    params = tmp / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "root": str(tmp / "data"),
                    "demo": {"n_train": 12, "n_val": 4, "size": 32},
                },
                "index": {"k": 3},
            }
        )
    )
    prepare_stage("demo", str(params))
    return tmp, params


def test_layout_embedding_is_class_fractions_per_cell():
    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 2
    emb = layout_embedding(label, 3, grid=2).reshape(4, 3)
    np.testing.assert_allclose(emb, [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="ids < 2"):
        layout_embedding(label, 2)


def test_index_stage_writes_top_k_training_exemplars(demo_root):
    tmp, params = demo_root
    cfg = yaml.safe_load(params.read_text())
    cfg["index"]["embedding"] = "layout"
    params.write_text(yaml.safe_dump(cfg))
    index_stage("demo", str(params))
    out = tmp / "data" / "demo_index"
    rows = read_pairs(out / "pairs.parquet")
    train_ids = {f"demo_{i:05d}" for i in range(12)}
    assert len(rows) == 16 * 3
    assert all(r["exemplar"] in train_ids and r["exemplar"] != r["query"] for r in rows)
    by_query = {}
    for r in rows:
        by_query.setdefault(r["query"], []).append(r["score"])
    assert all(s == sorted(s, reverse=True) for s in by_query.values())
    lines = (out / "pairs_val.txt").read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split(",")) == 4 for line in lines)
    assert (out / "train.faiss").is_file()


def test_vgg_embeddings_need_registered_weights(demo_root, tmp_path, monkeypatch):
    tmp, params = demo_root
    cfg = yaml.safe_load(params.read_text())
    cfg["index"] = {"embedding": "vgg19", "image_size": 32, "k": 2}
    params.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit, match="vgg19-dcbb9e9d.pth"):
        index_stage("demo", str(params), str(tmp_path / "no_weights"))
    # With (random-init) VGG19 weights the whole path runs: embeddings, index, pairs.
    torch.manual_seed(0)
    monkeypatch.setattr(build_module, "load_vgg19", lambda layout, wdir: VGG19(layout).eval())
    pairs = build_module.build_pairs(
        tmp / "data" / "demo", tmp_path / "out", IndexConfig(embedding="vgg19", image_size=32, k=2)
    )
    assert len(pairs) == 16 * 2
    assert len(list((tmp_path / "out" / "embeddings").glob("shard_*.npy"))) == 1


def test_official_lists_import_and_export_through_the_cli(demo_root, tmp_path, capsys):
    from cocosnet.cli import main

    tmp, _ = demo_root
    dataset_dir = tmp / "data" / "demo"
    official = tmp_path / "demo_ref.txt"
    official.write_text(
        "demo_00000.png,demo_00003.png,demo_00007.png\n"
        "images\\demo_00001.png,demo_00002.png,demo_00004.png\n"
    )
    out = tmp_path / "pairs.parquet"
    assert (
        main(
            [
                "pairs",
                "import",
                "--dataset",
                "demo",
                "--dataset-dir",
                str(dataset_dir),
                "--train",
                str(official),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = read_pairs(out)
    assert [(r["query"], r["exemplar"], r["rank"]) for r in rows[:2]] == [
        ("demo_00000", "demo_00003", 1),
        ("demo_00000", "demo_00007", 2),
    ]
    exported = tmp_path / "back.txt"
    assert main(["pairs", "export", str(out), "--split", "train", "--out", str(exported)]) == 0
    assert exported.read_text().splitlines()[0] == "demo_00000,demo_00003,demo_00007"
    bad = tmp_path / "bad.txt"
    bad.write_text("demo_00000.png,demo_99999.png\nno_comma_here\n")
    capsys.readouterr()
    assert (
        main(
            [
                "pairs",
                "import",
                "--dataset",
                "demo",
                "--dataset-dir",
                str(dataset_dir),
                "--train",
                str(bad),
                "--out",
                str(tmp_path / "bad.parquet"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.txt:1" in err and "demo_99999" in err and "bad.txt:2" in err


def test_deepfashion_never_retrieves_the_same_person(tmp_path, monkeypatch):
    """The stage excludes same-identity exemplars for DeepFashion without being told."""
    from cocosnet.data import deepfashion
    from cocosnet.data.prepare import write_prepared
    from cocosnet.formats.pose_render import write_openpose_txt

    from .test_deepfashion import person

    raw = tmp_path / "DeepFashion"
    rng = np.random.default_rng(0)
    names = [f"WOMEN/Dresses/id_0000000{p}/0{v}_1_front" for p in (1, 2, 3) for v in (1, 2)]
    for name in names:
        write_image(raw / "img" / f"{name}.jpg", rng.integers(0, 255, (60, 40, 3), np.uint8))
        folder, stem = name.rsplit("/", 1)
        write_openpose_txt(raw / "pose" / folder, stem, *person())
    (raw / "train.txt").write_text("".join(f"img/{n}.jpg\n" for n in names[:4]))
    (raw / "val.txt").write_text("".join(f"img/{n}.jpg\n" for n in names[4:]))
    data = tmp_path / "data"
    write_prepared(
        data / "deepfashion", deepfashion.ADAPTER.prepare(raw, data / "deepfashion", size=32)
    )
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "data": {"root": str(data)},
                "index": {
                    "datasets": ["deepfashion"],
                    "embedding": "vgg19",
                    "image_size": 32,
                    "k": 3,
                },
            }
        )
    )
    torch.manual_seed(0)
    monkeypatch.setattr(build_module, "load_vgg19", lambda layout, wdir: VGG19(layout).eval())
    index_stage("deepfashion", str(params))
    rows = read_pairs(data / "deepfashion_index" / "pairs.parquet")
    person_of = {n.replace("/", "__"): n.split("/")[2] for n in names}
    assert rows and all(person_of[r["query"]] != person_of[r["exemplar"]] for r in rows)


def test_pairs_commands_refuse_an_empty_selection(demo_root, tmp_path, capsys):
    """A typo'd split, a split with no pairs or an empty official list is an error that
    writes nothing, never an empty file with exit 0."""
    from cocosnet.cli import main

    tmp, _ = demo_root
    official, out = tmp_path / "demo_ref.txt", tmp_path / "pairs.parquet"
    official.write_text("demo_00000.png,demo_00003.png\n")
    imp = ["pairs", "import", "--dataset", "demo", "--dataset-dir", str(tmp / "data" / "demo")]
    assert main([*imp, "--train", str(official), "--out", str(out)]) == 0
    exported = tmp_path / "list.txt"
    for split, reason in (
        ("vall", "unknown split 'vall'; known: train, val, test"),
        ("val", "no pairs of split 'val' (splits there: train); nothing written"),
    ):
        capsys.readouterr()
        assert main(["pairs", "export", str(out), "--split", split, "--out", str(exported)]) == 2
        assert reason in capsys.readouterr().err and not exported.exists()
    empty = tmp_path / "empty_ref.txt"
    empty.write_text("\n")
    again = tmp_path / "again.parquet"
    assert main([*imp, "--train", str(empty), "--out", str(again)]) == 2
    assert "no pairs (an empty list); nothing written" in capsys.readouterr().err
    assert not again.exists()


def test_index_of_unlabelled_photos_says_what_to_do_and_leaves_nothing(tmp_path):
    from cocosnet.data import folder
    from cocosnet.data.prepare import write_prepared
    from cocosnet.weights import WeightsError

    for i in range(4):
        write_image(tmp_path / "raw" / f"p{i}.png", np.full((16, 16, 3), 40 * i, np.uint8))
    write_prepared(
        tmp_path / "folder", folder.ADAPTER.prepare(tmp_path / "raw", tmp_path / "folder", size=16)
    )
    out = tmp_path / "folder_index"
    with pytest.raises(ValueError, match="has 4 image.s. without one: use index.embedding: vgg19"):
        build_module.build_pairs(tmp_path / "folder", out, IndexConfig(embedding="layout"))
    assert not out.exists()
    with pytest.raises(WeightsError, match="cocosnet weights add vgg19_torchvision"):
        build_module.build_pairs(
            tmp_path / "folder", out, IndexConfig(embedding="vgg19"), weights_dir=tmp_path / "w"
        )
    assert not out.exists()
