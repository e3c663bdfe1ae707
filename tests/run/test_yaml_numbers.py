"""Numbers the way researchers write them: 1e-4 is a learning rate in a file and in ``--set``
(YAML 1.1 alone reads it as text; issue 27, Found 6). Nothing here starts Ray or trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.design.spec_loading import load_spec
from tests.run.conftest import write_spec


@pytest.mark.parametrize("written, value", [("1e-4", 1e-4), ("1E-3", 1e-3), ("5e-3", 5e-3), ("+1.5e-2", 0.015)])
def test_exponent_numbers_are_numbers_in_a_file_and_in_set(tmp_path: Path, written: str, value: float) -> None:
    spec = write_spec(tmp_path, datasets=["mri"])
    text = spec.read_text()
    in_file = spec.with_name("exp.yaml")
    in_file.write_text(
        text + f"\nscale:\n  finetune_lr: {written}\n"
        if "scale:" not in text
        else text.replace("scale:", f"scale:\n  finetune_lr: {written}", 1)
    )
    assert load_spec(in_file).scale.finetune_lr == pytest.approx(value)
    assert load_spec(spec, [f"finetuning.lr={written}"]).finetuning.lr == [pytest.approx(value)]
    assert load_spec(spec, [f"finetuning.lr={written},0.01"]).finetuning.lr == [pytest.approx(value), 0.01]
