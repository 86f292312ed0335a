"""Import of the official checkpoints, tested with state dicts that hold every official key and
shape (shared/official/keys-<preset>.json) filled with random values."""

import pickle

import pytest
import torch
from safetensors.torch import load_file

from cocosnet.cli import main
from cocosnet.config import model_config
from cocosnet.models.export import FILES, load_generator
from cocosnet.models.factory import build_correspondence, build_discriminator
from cocosnet.models.official import (
    OfficialCheckpointError,
    key_map,
    load_official_state,
    read_official_checkpoint,
)

from .helpers import official_keys

NETS = {"Corr": "correspondence", "G": "translation"}


def random_state(preset: str, net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    listing = official_keys(preset)["nets"][net]["state_dict"]
    return {k: torch.randn(shape, generator=g) for k, shape in listing.items()}


# ADE20k in the default suite (about 15 s each on 2 cores); the others with -m slow.
@pytest.mark.parametrize(
    "preset",
    [
        "ade20k",
        pytest.param("celebahq_edge", marks=pytest.mark.slow),
        pytest.param("deepfashion", marks=pytest.mark.slow),
    ],
)
def test_import_official_consumes_every_key(tmp_path, preset, capsys):
    states = {net: random_state(preset, net, i) for i, net in enumerate(NETS)}
    paths = {}
    for net, state in states.items():
        paths[net] = tmp_path / f"latest_net_{net}.pth"
        torch.save(state, paths[net])
    out = tmp_path / "imported"
    rc = main(
        [
            "import-official",
            "--preset",
            f"paper_{preset}",
            "--corr",
            str(paths["Corr"]),
            "--gen",
            str(paths["G"]),
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    cfg, corr, gen = load_generator(out)
    assert cfg.preset == f"paper_{preset}"
    for net, module in (("Corr", corr), ("G", gen)):
        mapping = key_map(module, NETS[net])
        assert set(mapping) == set(states[net])  # all keys consumed, none missing
        ours = module.state_dict()
        for official, mine in mapping.items():
            assert torch.equal(ours[mine], states[net][official]), official
        saved = load_file(str(out / FILES[NETS[net]]))
        assert len(saved) == len(states[net])


def test_official_discriminator_imports_without_its_unused_decoder(tmp_path):
    state = random_state("ade20k", "D")
    assert any(".dec." in k for k in state)
    path = tmp_path / "latest_net_D.pth"
    torch.save(state, path)
    cfg = model_config({"preset": "paper_ade20k"})
    disc = build_discriminator(cfg, init=False)  # the official netD's keys map onto ours
    load_official_state(
        disc, read_official_checkpoint(path), "discriminator", str(path), cfg.n_layers_d
    )
    n = sum(
        v.numel() for k, v in state.items() if ".dec." not in k and not k.endswith(("_u", "_v"))
    )
    assert sum(p.numel() for p in disc.parameters()) == n


@pytest.fixture(scope="module")
def ade_corr_state():
    return random_state("ade20k", "Corr")


def corr_net():
    return build_correspondence(model_config({"preset": "paper_ade20k"}), init=False)


def test_missing_key_is_refused(ade_corr_state):
    state = dict(ade_corr_state)
    del state["theta.weight"]
    with pytest.raises(OfficialCheckpointError, match=r"1 missing key\(s\):\n    theta.weight"):
        load_official_state(corr_net(), state, "correspondence")


def test_unexpected_key_is_refused(ade_corr_state):
    state = dict(ade_corr_state, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(OfficialCheckpointError, match="1 unexpected key"):
        load_official_state(corr_net(), state, "correspondence")


def test_misshaped_key_is_refused(ade_corr_state):
    state = dict(ade_corr_state, **{"phi.bias": torch.zeros(255)})
    with pytest.raises(
        OfficialCheckpointError, match=r"phi.bias: checkpoint \(255,\) vs model \(256,\)"
    ):
        load_official_state(corr_net(), state, "correspondence")


def test_wrong_preset_is_refused(ade_corr_state):
    """An ADE20k checkpoint does not fit the CelebA-HQ edge architecture (15 input channels)."""
    net = build_correspondence(model_config({"preset": "paper_celebahq_edge"}), init=False)
    with pytest.raises(OfficialCheckpointError, match="mis-shaped"):
        load_official_state(net, ade_corr_state, "correspondence")


def test_data_parallel_prefix_is_explained(ade_corr_state):
    state = {f"module.{k}": v for k, v in ade_corr_state.items()}
    with pytest.raises(OfficialCheckpointError, match="DataParallel prefix"):
        load_official_state(corr_net(), state, "correspondence")


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"theta.weight": Exploit()}, f)
    with pytest.raises(OfficialCheckpointError, match="not a (loadable|plain) tensor state dict"):
        read_official_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    rc = main(
        [
            "import-official",
            "--preset",
            "paper_ade20k",
            "--corr",
            str(tmp_path / "nope.pth"),
            "--gen",
            str(tmp_path / "nope.pth"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 2
    assert "nope.pth not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_imports_a_checkpoint_trained_at_other_widths(tmp_path, capsys):
    """An official-format checkpoint of a wider demo translation network (ngf 16): the preset
    plus `--set ngf=16` reads it; the preset alone refuses it."""
    from cocosnet.models.factory import build_correspondence, build_translation

    cfg = model_config({"preset": "demo", "ngf": 16})
    torch.manual_seed(0)
    nets = {"G": build_translation(cfg), "Corr": build_correspondence(cfg)}
    paths = {}
    for net, module in nets.items():
        ours = module.state_dict()
        paths[net] = tmp_path / f"latest_net_{net}.pth"
        torch.save({k: ours[v] for k, v in key_map(module, NETS[net]).items()}, paths[net])

    def imp(*extra):
        return main(
            ["import-official", "--preset", "demo", "--corr", str(paths["Corr"])]
            + ["--gen", str(paths["G"]), "--out", str(tmp_path / "out"), *extra]
        )

    assert imp() == 2
    assert "translation" in capsys.readouterr().err
    assert imp("--set", "ngf=16") == 0, capsys.readouterr().err
    cfg_back, _, gen_back = load_generator(tmp_path / "out")
    assert cfg_back.ngf == 16
    want = nets["G"].state_dict()
    assert all(torch.equal(gen_back.state_dict()[k], v) for k, v in want.items())
    with pytest.raises(SystemExit):
        imp("--set", "no_such_key=1")


def test_import_official_refuses_a_pickle_in_one_line(tmp_path, capsys):
    """A checkpoint holding Python objects is refused without PyTorch's unpickling advice."""
    import argparse

    from cocosnet.cli import main

    bad = tmp_path / "latest_net_G.pth"
    torch.save({"opt": argparse.Namespace(lr=1)}, bad)  # as training scripts save options
    argv = ["import-official", "--preset", "demo", "--corr", str(bad), "--gen", str(bad)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "not a plain tensor state dict (it holds pickled Python objects, which "
        "are never unpickled here); refused"
    ), err
    assert "\n" not in err and "weights_only" not in err and "\x1b" not in err
