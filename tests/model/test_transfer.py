from __future__ import annotations

import pytest
import torch

from study.errors import SpecError
from study.model import (
    TransferPlan,
    UNet,
    UNetConfig,
    check_schedule,
    check_scope,
    freeze,
    parameter_groups,
    scope_groups,
    transfer_weights,
    unfreeze,
)

WIDTHS = (8, 16, 32)
# Inpainting on 3-channel CT (head: 3 linear channels) -> segmentation of 4 tissues.
PRETEXT = UNetConfig(in_channels=3, out_channels=3, widths=WIDTHS, groups=4)
SEGMENT = UNetConfig(in_channels=3, out_channels=4, widths=WIDTHS, groups=4)


def _pair() -> tuple[UNet, UNet]:
    source, target = UNet(PRETEXT, seed=1), UNet(SEGMENT, seed=2)
    with torch.no_grad():  # as if pretrained: no tensor, not even a zero bias, equals the target's
        for param in source.parameters():
            param.add_(torch.rand_like(param) + 0.1)
    return source, target


def _equal_names(a: UNet, b: UNet) -> set[str]:
    sa, sb = a.state_dict(), b.state_dict()
    return {k for k in sb if k in sa and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k])}


@pytest.mark.parametrize(
    ("scope", "moved"),
    [("encoder", {"encoder"}), ("encoder+decoder", {"encoder", "decoder"}), ("none", set())],
)
def test_transfer_copies_exactly_the_scoped_groups(scope: str, moved: set[str]) -> None:
    source, target = _pair()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    groups = parameter_groups(target)
    report = transfer_weights(source.state_dict(), target, scope)  # type: ignore[arg-type]

    expected = {n for g in moved for n in groups[g]}
    assert set(report.copied) == expected
    assert _equal_names(source, target) == expected  # every copied tensor equals the source's
    for name, value in target.state_dict().items():
        if name not in expected:  # the rest, head included, kept the target's own init
            assert torch.equal(value, before[name]), name
    skipped = dict(report.skipped)
    assert set(skipped) | set(report.copied) == set(target.state_dict())
    assert skipped["head.weight"] == "the head is never transferred"
    if scope == "encoder":
        assert skipped["dec_1.up.weight"] == "decoder is outside scope 'encoder'"
    assert report.summary().startswith(f"transfer scope {scope!r}: copied {len(expected)}")


def test_transfer_copies_values_not_references() -> None:
    source, target = _pair()
    transfer_weights(source.state_dict(), target, "encoder")
    with torch.no_grad():
        source.enc_1.conv1.weight.add_(1.0)
    assert not torch.equal(source.enc_1.conv1.weight, target.enc_1.conv1.weight)


def test_shape_mismatch_names_the_tensor_and_both_shapes_and_leaves_target_untouched() -> None:
    source = UNet(UNetConfig(in_channels=3, out_channels=3, widths=(8, 16, 64), groups=4))  # wider bottleneck
    _, target = _pair()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        SpecError, match=r"'bottleneck.conv1.weight' has shape \(64, 16, 3, 3\), the target expects \(32, 16, 3, 3\)"
    ):
        transfer_weights(source.state_dict(), target, "encoder")
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_missing_and_extra_tensors_are_refused() -> None:
    source, target = _pair()
    state = source.state_dict()
    with pytest.raises(SpecError, match=r"lack tensor 'enc_2.norm1.bias'"):
        transfer_weights({k: v for k, v in state.items() if k != "enc_2.norm1.bias"}, target, "encoder")
    extra = {**state, "dec_7.up.weight": torch.zeros(1)}  # e.g. a deeper pretrained model
    with pytest.raises(SpecError, match=r"hold 1 encoder/decoder tensors the target lacks, e.g. 'dec_7.up.weight'"):
        transfer_weights(extra, target, "encoder+decoder")
    transfer_weights(extra, target, "encoder")  # outside the scope: not looked at


def test_head_of_different_size_is_no_obstacle_and_compiled_keys_are_accepted() -> None:
    source, target = _pair()
    state = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}  # saved from torch.compile
    report = transfer_weights(state, target, "encoder+decoder")
    assert "head.weight" not in report.copied and len(report.copied) > 0


def test_unknown_scope_suggests_the_closest() -> None:
    source, target = _pair()
    with pytest.raises(
        SpecError,
        match=r"^transfer scope: unknown value 'encoder_decoder'; did you mean 'encoder\+decoder'\? "
        r"Choices: 'none', 'encoder', 'encoder\+decoder'$",
    ):
        transfer_weights(source.state_dict(), target, "encoder_decoder")  # type: ignore[arg-type]
    assert check_scope("none") == "none"
    with pytest.raises(SpecError, match=r"fine-tuning schedule: unknown value 'at-once'; did you mean 'at_once'\?"):
        check_schedule("at-once")


def test_frozen_parameters_get_no_gradient_until_unfrozen() -> None:
    model = UNet(SEGMENT, seed=0)
    groups = parameter_groups(model)
    report = freeze(model, scope_groups("encoder"))
    assert set(report.frozen) == set(groups["encoder"])
    assert set(report.trainable) == set(groups["decoder"] + groups["head"])
    assert "enc_1.norm1.weight" in report.frozen  # GroupNorm affine is frozen with its level

    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(grads[n] is None for n in groups["encoder"])
    assert all(grads[n] is not None for n in groups["decoder"] + groups["head"])

    model.zero_grad(set_to_none=True)
    report = unfreeze(model)
    assert report.frozen == () and len(report.trainable) == len(grads)
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_adam_leaves_frozen_weights_unchanged() -> None:
    model = UNet(SEGMENT, seed=0)
    freeze(model, ["encoder", "decoder"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.99, 0.995))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    optimizer.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == (not name.startswith("head.")), name


def test_freeze_refuses_an_unknown_group() -> None:
    with pytest.raises(
        SpecError,
        match=r"parameter group: unknown value 'encoders'; did you mean 'encoder'\? "
        r"Choices: 'encoder', 'decoder', 'head'",
    ):
        freeze(UNet(SEGMENT), ["encoders"])


def test_transfer_plan_validates_the_combination() -> None:
    assert TransferPlan("encoder", "freeze_then_unfreeze").frozen_groups == ("encoder",)
    assert TransferPlan("encoder+decoder", "at_once").frozen_groups == ()
    with pytest.raises(SpecError, match=r"'freeze_then_unfreeze' needs transferred weights"):
        TransferPlan("none", "freeze_then_unfreeze")
    with pytest.raises(SpecError, match=r"did you mean 'encoder'\?"):
        TransferPlan("encoderr", "at_once")  # type: ignore[arg-type]


def test_transfer_between_two_authors_models_copies_the_same_tensors() -> None:
    """The authors' U-Net (WS on the last conv, norm after the ReLU, 3 x 3 up-convolutions) with
    running GroupNorm statistics: the encoder's parameters and its statistics move, the head
    (3 x 3 for inpainting, 1 x 1 for segmentation) and the decoder stay."""
    fields = dict(in_channels=3, widths=WIDTHS, groups=4, norm_running_stats=True)
    source = UNet(UNetConfig.for_architecture("authors", inpainting=True, out_channels=3, **fields), seed=1)
    target = UNet(UNetConfig.for_architecture("authors", inpainting=False, out_channels=4, **fields), seed=2)
    source(torch.randn(4, 3, 16, 16) * 3 + 1)  # a training step's statistics: no buffer keeps its initial value
    with torch.no_grad():
        for param in source.parameters():
            param.add_(torch.rand_like(param) + 0.1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = transfer_weights(source.state_dict(), target, "encoder")

    state = source.state_dict()
    encoder = {k for k in target.state_dict() if k.startswith(("enc_", "bottleneck"))}
    assert "enc_1.norm2.running_var" in encoder and "enc_1.norm1.weight" not in state  # one norm per level
    assert set(report.copied) == encoder
    for name, value in target.state_dict().items():
        if name in encoder:
            assert torch.equal(value, state[name]), name
        else:
            assert torch.equal(value, before[name]), name
    assert source.head.kernel_size == (3, 3) and target.head.kernel_size == (1, 1)


def test_an_authors_model_does_not_take_the_default_models_weights() -> None:
    source = UNet(PRETEXT)
    target = UNet(
        UNetConfig.for_architecture("authors", inpainting=False, in_channels=3, out_channels=4, widths=WIDTHS, groups=4)
    )
    with pytest.raises(SpecError, match="tensors the target lacks|lack tensor"):
        transfer_weights(source.state_dict(), target, "encoder")
