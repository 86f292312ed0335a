import math

import pytest
import torch
import torch.nn.functional as F

from cocosnet.training.augment import Distortion, distort, sample_grid

RICH = Distortion(crop=0.3, rotate=20, scale=0.2, translate=0.1, shear=10, tps=0.05)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def one_hot_blocks(batch, classes, size, seed):
    """B x C x H x W one-hot map of an 8 x 8 lattice of random classes; size is H or (H, W)."""
    size = (size, size) if isinstance(size, int) else size
    labels = torch.randint(classes, (batch, 1, 8, 8), generator=gen(seed))
    labels = F.interpolate(labels.float(), size=size, mode="nearest").long()[:, 0]
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def test_identity_returns_input():
    d = Distortion(flip=False)
    image = torch.rand(2, 3, 12, 20, generator=gen(0))
    semantic = one_hot_blocks(2, 5, (12, 20), 1)
    grid = sample_grid(d, 2, 12, 20, gen(2))
    expected = F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), (2, 1, 12, 20), align_corners=False)
    torch.testing.assert_close(grid, expected, atol=1e-6, rtol=0)
    out, out_semantic = distort(grid, image, semantic)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)
    assert torch.equal(out_semantic, semantic)


def test_flip_only_mirrors_exactly():
    d = Distortion(flip=True)
    image = torch.rand(8, 3, 10, 14, generator=gen(0))
    grid = sample_grid(d, 8, 10, 14, gen(3))
    flipped = grid[:, 0, 0, 0] > 0  # the left-most output pixel reads the right of the source
    assert flipped.any() and (~flipped).any()
    out, _ = distort(grid, image)
    torch.testing.assert_close(out[flipped], image[flipped].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~flipped], image[~flipped], atol=1e-5, rtol=0)


def test_same_seed_same_output_different_seed_different():
    image = torch.rand(2, 3, 16, 16, generator=gen(0))
    a, _ = distort(sample_grid(RICH, 2, 16, 16, gen(5)), image)
    b, _ = distort(sample_grid(RICH, 2, 16, 16, gen(5)), image)
    c, _ = distort(sample_grid(RICH, 2, 16, 16, gen(6)), image)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_resumes_from_saved_generator_state():
    g = gen(7)
    sample_grid(RICH, 2, 8, 8, g)
    state = g.get_state()
    second = sample_grid(RICH, 2, 8, 8, g)
    g.set_state(state)
    assert torch.equal(sample_grid(RICH, 2, 8, 8, g), second)


def test_draws_per_call_do_not_depend_on_options():
    settings = [
        Distortion(flip=False),
        Distortion(),
        RICH,
        Distortion(flip=False, crop=0.9, tps=0.5, tps_grid=7),
    ]
    states = []
    for d in settings:
        g = gen(11)
        sample_grid(d, 3, 8, 8, g)
        states.append(g.get_state())
    assert all(torch.equal(s, states[0]) for s in states[1:])


def test_one_hot_stays_one_hot_under_affine_and_tps():
    semantic = one_hot_blocks(3, 6, 32, 0)
    image = torch.rand(3, 3, 32, 32, generator=gen(1))
    grid = sample_grid(Distortion(rotate=30, scale=0.3, shear=20, tps=0.1), 3, 32, 32, gen(2))
    _, out = distort(grid, image, semantic)
    assert torch.equal(out.sum(dim=1), torch.ones(3, 32, 32))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out, semantic)


def test_image_and_semantic_are_warped_consistently():
    classes, size = 5, 64
    semantic = one_hot_blocks(4, classes, size, 0)
    palette = torch.rand(classes, 3, generator=gen(1))
    image = torch.einsum("bchw,ck->bkhw", semantic, palette)  # colour encodes the class
    grid = sample_grid(RICH, 4, size, size, gen(2))
    out, out_semantic = distort(grid, image, semantic)
    cls = out_semantic.argmax(dim=1)
    colour_cls = torch.cdist(out.permute(0, 2, 3, 1).reshape(-1, 3), palette).argmin(dim=1)
    # Away from boundaries: no other class within the 5 x 5 neighbourhood of the warped map.
    present = F.max_pool2d(out_semantic, 5, stride=1, padding=2).sum(dim=1)
    interior = (present == 1).flatten()
    assert interior.float().mean() > 0.3
    agree = (colour_cls == cls.flatten())[interior].float().mean()
    assert agree >= 0.95


def test_tps_moves_pixels_within_a_sane_range():
    d = Distortion(flip=False, tps=0.05)
    grid = sample_grid(d, 4, 32, 32, gen(0))
    identity = sample_grid(Distortion(flip=False), 4, 32, 32, gen(0))
    shift = (grid - identity).abs()
    assert shift.max() > 0.01
    assert grid.abs().max() < 1.5
    # Smooth: neighbouring output pixels read nearby source pixels (no tearing).
    step = (grid[:, :, 1:] - grid[:, :, :-1]).norm(dim=-1)
    assert step.max() < 4 * 2 / 32


def test_crop_stays_inside_the_image():
    grid = sample_grid(Distortion(flip=False, crop=0.9), 8, 16, 16, gen(0))
    assert grid.abs().max() <= 1
    assert (grid.amax(dim=(1, 2)) - grid.amin(dim=(1, 2))).min() < 1.9  # something was cropped


def test_rotation_is_rigid_in_pixels_on_non_square_images():
    height, width = 16, 40
    grid = sample_grid(Distortion(flip=False, rotate=45), 2, height, width, gen(0))
    pixels = grid * torch.tensor([width / 2, height / 2])
    along_x = (pixels[:, :, 1:] - pixels[:, :, :-1]).norm(dim=-1)
    along_y = (pixels[:, 1:] - pixels[:, :-1]).norm(dim=-1)
    torch.testing.assert_close(along_x, torch.ones_like(along_x), atol=1e-4, rtol=0)
    torch.testing.assert_close(along_y, torch.ones_like(along_y), atol=1e-4, rtol=0)
    assert (grid - sample_grid(Distortion(flip=False), 2, height, width, gen(0))).abs().max() > 0.1


def test_distort_casts_grid_and_keeps_integer_labels():
    grid = sample_grid(RICH, 2, 8, 8, gen(0))
    image = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=gen(1))
    labels = torch.randint(7, (2, 1, 8, 8), generator=gen(2))
    out, out_labels = distort(grid, image, labels)
    assert out.dtype == torch.float64
    assert out_labels.dtype == torch.long
    assert set(out_labels.unique().tolist()) <= set(labels.unique().tolist())
    with pytest.raises(ValueError, match="image"):
        distort(grid, image[:1])


@pytest.mark.parametrize(
    "field, value",
    [
        ("crop", 0.95),
        ("crop", -0.1),
        ("rotate", 181.0),
        ("scale", 1.0),
        ("translate", 0.6),
        ("shear", 61.0),
        ("tps", 0.6),
        ("tps", math.nan),
        ("tps_grid", 1),
        ("tps_grid", 2.5),
        ("flip", 1),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Distortion(**{field: value})
