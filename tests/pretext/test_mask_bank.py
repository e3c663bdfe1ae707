from __future__ import annotations

import numpy as np
import pytest
import torch

from study.errors import SpecError
from study.pretext import SAMPLERS, CorruptionConfig, MaskBank, apply_patches


def corners_of(config: CorruptionConfig, shape: tuple[int, int], seed: int) -> list[np.ndarray]:
    """The corners MaskBank.build draws for ``seed`` (it uses the sampler on that generator)."""
    rng = np.random.default_rng(seed)
    return config.make_sampler().sample_many(config.n_masks, *shape, rng, paired=config.paired)


def turned(image: np.ndarray, turns: int) -> np.ndarray:
    return np.rot90(image, turns, axes=(-2, -1))


@pytest.mark.parametrize("task", ["prediction", "restoration"])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("shape", [(40, 40), (37, 52)])  # square, and odd non-square
def test_bank_matches_the_reference_for_every_mask_and_rotation(
    task: str, sampler: str, shape: tuple[int, int]
) -> None:
    config = CorruptionConfig(task, sampler, 4, fill_value=-3.0, n_masks=3)
    bank = MaskBank.build(config, shape, seed=11)
    image = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    for mask_id, corners in enumerate(corners_of(config, shape, 11)):
        for turns in bank.rotations:
            # the mask turned by k corrupts as rot90(corrupt(rot90(image, -k)), k)
            expected = turned(apply_patches(turned(image, -turns), corners, 4, task, -3.0), turns)
            batch = torch.from_numpy(image)[None]
            out, changed = bank.apply(batch, torch.tensor([mask_id]), torch.tensor([turns]))
            np.testing.assert_array_equal(out[0].numpy(), expected)
            np.testing.assert_array_equal(changed[0].numpy(), (expected != image).any(axis=0))


@pytest.mark.parametrize("k", [8, 16, 32, 64])
def test_restoration_at_512_keeps_each_channels_values_and_swaps_disjoint_patches(k: int) -> None:
    bank = MaskBank.build(CorruptionConfig("restoration", "poisson_disc", k, n_masks=2), (512, 512), seed=k)
    x = torch.randn(3, 2, 512, 512)
    out, changed = bank.corrupt_with_mask(x, torch.Generator().manual_seed(0))
    values = lambda t: np.sort(t.flatten(2).numpy(), axis=-1)  # noqa: E731
    np.testing.assert_array_equal(values(out), values(x))  # per image and channel
    assert (changed.float().mean(dim=(1, 2)) == 0.25).all()  # N * K^2 = H * W / 4, all moved


@pytest.mark.parametrize("task", ["prediction", "restoration"])
def test_every_channel_is_corrupted_at_the_same_places(task: str) -> None:
    bank = MaskBank.build(CorruptionConfig(task, "random", 8, n_masks=4), (96, 96), seed=0)
    x = torch.randn(5, 1, 96, 96)
    three = torch.cat([x, x + 10.0, 2.0 * x], dim=1)  # channels related pointwise
    out = bank.corrupt(three, torch.Generator().manual_seed(1))
    if task == "restoration":
        assert torch.allclose(out[:, 1], out[:, 0] + 10.0) and torch.allclose(out[:, 2], 2.0 * out[:, 0])
    else:
        changed = out[:, 0] != three[:, 0]
        for c in (1, 2):
            assert torch.equal(out[:, c] != three[:, c], changed)


def test_prediction_fills_the_changed_pixels_and_leaves_the_rest() -> None:
    config = CorruptionConfig("prediction", "poisson_disc", 8, fill_value=0.0, n_masks=2)
    bank = MaskBank.build(config, (64, 80), seed=3)
    x = torch.rand(4, 3, 64, 80) + 1.0  # never 0, so every filled pixel shows
    out, changed = bank.corrupt_with_mask(x, torch.Generator().manual_seed(0))
    assert (out.permute(1, 0, 2, 3)[:, changed] == 0.0).all()
    assert torch.equal(out.permute(1, 0, 2, 3)[:, ~changed], x.permute(1, 0, 2, 3)[:, ~changed])


@pytest.mark.parametrize("k", [8, 16, 32, 64])
def test_turned_masks_are_rot90_of_the_unturned_mask_at_512(k: int) -> None:
    bank = MaskBank.build(CorruptionConfig("prediction", "poisson_disc", k, n_masks=1), (512, 512), seed=k)
    assert bank.rotations == (0, 1, 2, 3)
    unturned = bank.changed_pixels(0, 0)
    for turns in (1, 2, 3):
        np.testing.assert_array_equal(bank.changed_pixels(0, turns), np.rot90(unturned, turns))


def test_non_square_images_draw_only_half_turns() -> None:
    bank = MaskBank.build(CorruptionConfig("restoration", "random", 7, n_masks=2), (97, 130), seed=0)
    assert bank.rotations == (0, 2)
    _, turns = bank.draw(200, torch.Generator().manual_seed(0))
    assert set(turns.tolist()) == {0, 2}
    np.testing.assert_array_equal(bank.changed_pixels(1, 2), np.rot90(bank.changed_pixels(1, 0), 2))
    with pytest.raises(SpecError, match=r"turns must be among \[0, 2\] for this bank, got \[1\]"):
        bank.apply(torch.zeros(1, 1, 97, 130), torch.tensor([0]), torch.tensor([1]))


def test_draws_are_fresh_every_call_and_use_every_mask_and_rotation() -> None:
    bank = MaskBank.build(CorruptionConfig("prediction", "random", 4, n_masks=3), (32, 32), seed=0)
    generator = torch.Generator().manual_seed(0)
    ids, turns = bank.draw(400, generator)
    assert set(ids.tolist()) == {0, 1, 2} and set(turns.tolist()) == {0, 1, 2, 3}
    x = torch.randn(8, 1, 32, 32)
    first, second = bank.corrupt(x, generator), bank.corrupt(x, generator)
    assert not torch.equal(first, second)


def test_rotate_false_draws_no_rotation() -> None:
    config = CorruptionConfig("prediction", "random", 4, n_masks=2, rotate=False)
    bank = MaskBank.build(config, (32, 32), seed=0)
    assert bank.rotations == (0,)
    assert set(bank.draw(50, torch.Generator().manual_seed(0))[1].tolist()) == {0}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_building_is_deterministic_given_the_seed(sampler: str) -> None:
    config = CorruptionConfig("restoration", sampler, 8, n_masks=3)
    a, b, c = (MaskBank.build(config, (128, 128), seed=s) for s in (5, 5, 6))
    x = torch.randn(6, 1, 128, 128)
    out_a = a.corrupt(x, torch.Generator().manual_seed(2))
    assert torch.equal(out_a, b.corrupt(x, torch.Generator().manual_seed(2)))
    assert not torch.equal(out_a, c.corrupt(x, torch.Generator().manual_seed(2)))


def test_input_batch_is_left_untouched() -> None:
    bank = MaskBank.build(CorruptionConfig("restoration", "poisson_disc", 8, n_masks=1), (64, 64), seed=0)
    x = torch.randn(2, 1, 64, 64)
    before = x.clone()
    bank.corrupt(x, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    ("task", "sampler", "rows"),
    [
        ("restoration", "poisson_disc", 1),  # disjoint swaps: src is dst with halves exchanged
        ("prediction", "poisson_disc", 1),
        ("restoration", "random", 2),  # overlapping pairs: src stored too
    ],
)
def test_bank_memory_is_the_moved_pixel_indices(task: str, sampler: str, rows: int) -> None:
    bank = MaskBank.build(CorruptionConfig(task, sampler, 8, n_masks=2), (512, 512), seed=0)
    quarter = 512 * 512 // 4  # int32 indices per mask and row; rotations are computed, not stored
    if sampler == "poisson_disc":
        assert bank.nbytes == 2 * quarter * 4  # exactly a quarter moves
    else:
        assert 2 * rows * quarter * 4 < bank.nbytes < 2 * rows * (512 * 512 // 3) * 4
    # so 100 Poisson-disc masks take 100 * 65536 * 4 B = 26.2 MB


def test_bank_refuses_a_batch_of_another_size() -> None:
    bank = MaskBank.build(CorruptionConfig("prediction", "random", 4, n_masks=1), (32, 32), seed=0)
    with pytest.raises(SpecError, match=r"built for batches \(B, C, 32, 32\), got \(2, 1, 32, 31\)"):
        bank.corrupt(torch.zeros(2, 1, 32, 31))
    with pytest.raises(SpecError, match=r"mask_ids must lie in \[0, 0\]"):
        bank.apply(torch.zeros(1, 1, 32, 32), torch.tensor([1]), torch.tensor([0]))


def test_patch_larger_than_the_image_is_refused_at_build() -> None:
    with pytest.raises(SpecError, match=r"patch_size 64 does not fit a 48 x 48 image: must be in \[1, 48\]"):
        MaskBank.build(CorruptionConfig("prediction", "poisson_disc", 64, n_masks=1), (48, 48), seed=0)
