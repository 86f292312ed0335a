import math

import pytest
from pydantic import ValidationError

from cocosnet.config import PRESETS, ConfigError, model_config, parse_params


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_resolve(preset):
    cfg = model_config({"preset": preset})
    assert cfg.preset == preset
    assert cfg.image_size % cfg.corr_size == 0


def test_paper_presets_carry_the_official_settings():
    ade = model_config({"preset": "paper_ade20k"})
    assert (ade.semantic_nc, ade.adaptor_kernel, ade.maskmix, ade.warp_mask) == (
        151,
        3,
        True,
        "direct",
    )
    assert (ade.image_size, ade.corr_size, ade.alpha, ade.match_kernel) == (256, 64, 100.0, 3)
    face = model_config({"preset": "paper_celebahq_edge"})
    assert (face.semantic_nc, face.adaptor_kernel, face.warp_bilinear) == (15, 4, True)
    fashion = model_config({"preset": "paper_deepfashion"})
    assert (fashion.semantic_nc, fashion.maskmix, fashion.warp_patch) == (20, False, True)


def test_section_keys_override_the_preset():
    cfg = model_config({"preset": "paper_ade20k", "warp_impl": "naive", "corr_size": 128})
    assert cfg.warp_impl == "naive" and cfg.corr_size == 128 and cfg.warp_stride == 2
    assert cfg.semantic_nc == 151


def test_config_is_frozen():
    cfg = model_config({"preset": "demo"})
    with pytest.raises(ValidationError):
        cfg.ngf = 3


@pytest.mark.parametrize(
    "section, fragment",
    [
        ({"preset": "demo", "ngff": 3}, "model.ngff: unknown key"),
        ({"preset": "demo", "ngf": "wide"}, "model.ngf"),
        ({"preset": "demo", "ngf": 8.5}, "model.ngf"),
        ({"preset": "demo", "maskmix": "yes"}, "model.maskmix"),
        ({"preset": "demo", "alpha": math.nan}, "model.alpha"),
        ({"preset": "demo", "alpha": -1.0}, "model.alpha"),
        ({"preset": "demo", "corr_size": 24}, "corr_size=24 must divide image_size=64"),
        ({"preset": "demo", "corr_size": 8}, "by 1, 2 or 4"),
        ({"preset": "demo", "image_size": 80}, "multiple of 32"),
        ({"preset": "demo", "warp_impl": "flash"}, "model.warp_impl"),
        ({"preset": "nope"}, "unknown preset 'nope'"),
    ],
)
def test_bad_model_sections_are_clear_errors(section, fragment):
    with pytest.raises(ConfigError) as err:
        model_config(section)
    assert fragment in str(err.value)


def test_parse_params_validates_sections():
    assert parse_params({"model": {"preset": "demo"}}).model.image_size == 64
    assert parse_params(None).model.preset is None
    with pytest.raises(ConfigError, match="unknown params section"):
        parse_params({"modle": {}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_params({"model": [1, 2]})
    with pytest.raises(ConfigError, match="mapping of sections"):
        parse_params([1])


def test_int_is_accepted_for_float_fields():
    assert model_config({"preset": "demo", "alpha": 50}).alpha == 50.0


def test_data_section_defaults_and_errors():
    data = parse_params({"data": {"demo": {"n_train": 10}}}).data
    assert data.datasets == ["demo"] and data.demo.n_train == 10 and data.demo.size == 64
    with pytest.raises(ConfigError, match="data.demo.n_trian: unknown key"):
        parse_params({"data": {"demo": {"n_trian": 10}}})
    with pytest.raises(ConfigError, match="data.datasets.0"):
        parse_params({"data": {"datasets": ["imagenet"]}})
    with pytest.raises(ConfigError, match="data.max_pixels"):
        parse_params({"data": {"max_pixels": 0}})


def test_every_problem_of_every_section_is_reported_at_once():
    raw = {
        "evals": {},
        "data": {"load_sizee": 3},
        "train": {"lrr": 1, "max_steps": -3},
        "model": {"preset": "nope"},
        "tracking": 3,
    }
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "data.load_sizee",
        "model.preset",
        "tracking",
        "train.lrr",
        "train.max_steps",
        "unknown params section(s)",
    ]
