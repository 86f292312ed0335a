"""Pretrained-weight registry and VGG19, with random-init files saved in each real layout."""

import json

import pytest
import torch
import torchvision

from cocosnet import weights
from cocosnet.cli import main
from cocosnet.models.vgg import CONVS, TORCHVISION_INDEX, VGG19, load_vgg19


def caffe_state(seed=0):
    """A random VGG19 in the layout of vgg19_conv.pth: conv{i}_{j}.weight / .bias, no classifier."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, cin, cout in CONVS:
        state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01
    return state


@pytest.fixture(scope="module")
def caffe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dl") / "vgg19_conv.pth"
    torch.save(caffe_state(), path)
    return path


def test_missing_file_names_it_and_where_to_get_it(tmp_path):
    with pytest.raises(weights.WeightsError) as err:
        weights.resolve("vgg19_caffe", tmp_path)
    msg = str(err.value)
    assert (
        "vgg19_conv.pth" in msg and "drive.google.com" in msg and "weights add vgg19_caffe" in msg
    )


def test_unknown_name_is_refused(tmp_path):
    with pytest.raises(weights.WeightsError, match="unknown weights 'vgg16'"):
        weights.resolve("vgg16", tmp_path)


def test_file_without_published_digest_needs_registration(tmp_path, caffe_file):
    (tmp_path / "vgg19_conv.pth").write_bytes(caffe_file.read_bytes())
    with pytest.raises(weights.WeightsError, match="no checksum to verify"):
        weights.resolve("vgg19_caffe", tmp_path)


def test_add_records_digest_and_detects_later_changes(tmp_path, caffe_file):
    wdir = tmp_path / "weights"
    dest = weights.add("vgg19_caffe", caffe_file, wdir)
    lock = json.loads((wdir / "lock.json").read_text())
    assert lock["vgg19_conv.pth"] == weights.sha256_of(caffe_file)
    assert weights.resolve("vgg19_caffe", wdir) == dest
    data = bytearray(dest.read_bytes())
    data[-10] ^= 0xFF
    dest.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match="corrupt or not the official one"):
        weights.resolve("vgg19_caffe", wdir)


def test_name_prefix_digest_is_enforced(tmp_path):
    """torchvision's file name carries the first 8 hex digits of its sha256; a random file fails."""
    fake = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, fake)
    with pytest.raises(weights.WeightsError, match="start with dcbb9e9d"):
        weights.add("vgg19_torchvision", fake, tmp_path / "w")
    with pytest.raises(weights.WeightsError, match="start with dcbb9e9d"):
        weights.resolve("vgg19_torchvision", tmp_path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_state_dict_loading_refuses_pickled_code(tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (exec, ("import sys; sys.exit(3)",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"a": Exploit()}))
    weights.add("vgg19_caffe", path, tmp_path / "w")
    with pytest.raises(weights.WeightsError, match="not a (loadable|plain) tensor state dict"):
        weights.load_state_dict("vgg19_caffe", tmp_path / "w")


def test_weights_cli_list_and_add(tmp_path, caffe_file, capsys):
    wdir = str(tmp_path / "w")
    assert main(["weights", "--weights-dir", wdir, "add", "vgg19_caffe", str(caffe_file)]) == 0
    capsys.readouterr()
    assert main(["weights", "--weights-dir", wdir, "list"]) == 0
    rows = {r["name"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert rows["vgg19_caffe"] == "ok"
    assert rows["inception_fid"].startswith("missing pretrained file")


def test_caffe_layout_loads_with_official_preprocessing(tmp_path, caffe_file):
    weights.add("vgg19_caffe", caffe_file, tmp_path)
    vgg = load_vgg19("caffe", tmp_path)
    assert not any(p.requires_grad for p in vgg.parameters())
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = vgg(image, ["relu1_1", "relu3_2", "pool2"])
    assert set(feats) == {"relu1_1", "relu3_2", "pool2"}
    # Independent computation of relu1_1: [-1,1] -> [0,1] -> BGR - Caffe mean -> x255.
    state = caffe_state()
    bgr = ((image + 1) / 2).flip(1)
    x = (bgr - torch.tensor([0.40760392, 0.45795686, 0.48501961]).view(1, 3, 1, 1)) * 255
    expected = torch.relu(
        torch.nn.functional.conv2d(x, state["conv1_1.weight"], state["conv1_1.bias"], padding=1)
    )
    assert torch.allclose(feats["relu1_1"], expected, rtol=1e-5, atol=1e-4)
    assert feats["relu3_2"].shape == (2, 256, 8, 8) and feats["pool2"].shape == (2, 128, 8, 8)


def test_torchvision_layout_matches_torchvision_vgg19():
    torch.manual_seed(0)
    reference = torchvision.models.vgg19(weights=None).eval()
    ours = VGG19("torchvision")
    ours.load_layout_state_dict(reference.state_dict(), "torchvision vgg19")
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    x = ((image + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    expected = {}
    with torch.no_grad():
        for i, layer in enumerate(reference.features):
            x = layer(x)
            for name, idx in TORCHVISION_INDEX.items():
                if i == idx + 1:  # the ReLU right after the conv
                    expected[name.replace("conv", "relu")] = x.clone()
        got = ours(image, list(expected))
    for name, value in expected.items():
        assert torch.allclose(got[name], value, rtol=1e-4, atol=1e-4), name


def test_wrong_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="not a VGG19 torchvision state dict"):
        VGG19("torchvision").load_layout_state_dict(caffe_state(), "vgg19_conv.pth")
    state = caffe_state()
    state["conv2_1.weight"] = torch.zeros(128, 64, 1, 1)
    with pytest.raises(ValueError, match=r"conv2_1.weight has shape \(128, 64, 1, 1\)"):
        VGG19("caffe").load_layout_state_dict(state, "vgg19_conv.pth")
    with pytest.raises(ValueError, match="unknown VGG19 layers"):
        VGG19("caffe")(torch.zeros(1, 3, 8, 8), ["relu6_1"])


def test_model_folder_is_registered_and_verified(tmp_path):
    src = tmp_path / "download"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights v1")
    (src / "config.json").write_text("{}")
    (src / "preprocessor_config.json").write_text("{}")
    wdir = tmp_path / "w"
    with pytest.raises(weights.WeightsError, match="missing pretrained folder"):
        weights.resolve("upernet_ade20k", wdir)
    dest = weights.add("upernet_ade20k", src, wdir)
    assert sorted(p.name for p in dest.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    lock = json.loads((wdir / "lock.json").read_text())
    assert lock["upernet_ade20k/model.safetensors"] == weights.sha256_of(src / "model.safetensors")
    assert weights.resolve("upernet_ade20k", wdir) == dest
    (dest / "model.safetensors").write_bytes(b"weights v2")
    with pytest.raises(weights.WeightsError, match="corrupt or not the official one"):
        weights.resolve("upernet_ade20k", wdir)
    (src / "config.json").unlink()
    with pytest.raises(weights.WeightsError, match="must be a folder holding"):
        weights.add("upernet_ade20k", src, wdir)


def test_only_verifiable_files_can_be_fetched(tmp_path):
    for name in ("upernet_ade20k", "vgg19_caffe", "openpose_body_caffemodel"):
        with pytest.raises(weights.WeightsError, match="cannot be fetched automatically"):
            weights.fetch(name, tmp_path)


def test_fetch_downloads_with_progress_and_checks_the_digest(tmp_path, monkeypatch, capsys):
    """`weights fetch` goes through torch.hub's downloader (progress bar, digest on the way);
    here from a file:// URL standing in for the official one."""
    import dataclasses

    source = tmp_path / "official.pth"
    torch.save({"w": torch.zeros(3)}, source)
    digest = weights.sha256_of(source)
    entry = dataclasses.replace(
        weights.REGISTRY["vgg19_torchvision"], url=source.as_uri(), sha256_prefix=digest[:8]
    )
    monkeypatch.setitem(weights.REGISTRY, "vgg19_torchvision", entry)
    dest = weights.fetch("vgg19_torchvision", tmp_path / "weights")
    assert weights.sha256_of(dest) == digest and "100%" in capsys.readouterr().err
    assert not list((tmp_path / "weights").glob("*.part*"))
    wrong = dataclasses.replace(entry, sha256_prefix="00000000")
    monkeypatch.setitem(weights.REGISTRY, "vgg19_torchvision", wrong)
    with pytest.raises(weights.WeightsError, match="could not download vgg19_torchvision"):
        weights.fetch("vgg19_torchvision", tmp_path / "other")
    assert not list((tmp_path / "other").glob("*.part*"))


def test_add_refuses_files_that_are_not_the_entry(tmp_path, caffe_file, capsys):
    """`weights add` loads a file without a published digest as its loader will, and refuses
    it (one line, nothing recorded) unless it holds that entry's keys and shapes."""
    from tests.test_pose import tiny_model as tiny_openpose

    wdir = tmp_path / "weights"
    text = tmp_path / "notes.pth"
    text.write_text("twenty-one bytes here")
    wrong = tmp_path / "wrong.pth"
    state = caffe_state()
    state["conv5_4.weight"] = state["conv5_4.weight"][:, :8]
    torch.save(state, wrong)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in caffe_state().items() if not k.startswith("conv5")}, partial)
    (tmp_path / "pose").mkdir()
    prototxt, caffemodel = tiny_openpose(tmp_path / "pose")
    junk_proto = tmp_path / "junk.prototxt"
    junk_proto.write_text("layer { this is not caffe")
    cases = [
        ("vgg19_caffe", text, "not a loadable tensor state dict"),
        ("vgg19_caffe", wrong, "conv5_4.weight has shape (512, 8, 3, 3), VGG19 needs"),
        ("vgg19_caffe", partial, "is not a VGG19 caffe state dict: missing ['conv5_1.weight'"),
        ("openpose_body_caffemodel", caffemodel, "add openpose_body_prototxt first"),
        ("openpose_body_prototxt", junk_proto, "not a Caffe network definition"),
    ]
    for name, path, reason in cases:
        assert main(["weights", "--weights-dir", str(wdir), "add", name, str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and "\n" not in err, (name, err)
        assert not (wdir / "lock.json").exists()
    assert main(["weights", "--weights-dir", str(wdir), "add", "vgg19_caffe", str(caffe_file)]) == 0
    assert main(["weights", "--weights-dir", str(wdir), "add", "openpose_body_prototxt",
                 str(prototxt)]) == 0  # fmt: skip
    assert main(["weights", "--weights-dir", str(wdir), "add", "openpose_body_caffemodel",
                 str(text)]) == 2  # fmt: skip
    assert "not Caffe weights for it" in capsys.readouterr().err
    assert main(["weights", "--weights-dir", str(wdir), "add", "openpose_body_caffemodel",
                 str(caffemodel)]) == 0  # fmt: skip
    assert len(json.loads((wdir / "lock.json").read_text())) == 3
