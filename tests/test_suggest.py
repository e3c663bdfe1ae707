from __future__ import annotations

import subprocess
import sys

from study._suggest import closest, unknown_choice

SAMPLERS = ("random", "poisson_disc", "poisson_disc_spread")


def test_the_closest_name_is_suggested_and_an_unrelated_one_is_not() -> None:
    assert closest("poison_disc", SAMPLERS) == "poisson_disc"
    assert closest("grid", SAMPLERS) is None
    assert unknown_choice("sampler", "poison_disc", SAMPLERS) == (
        "sampler: unknown value 'poison_disc'; did you mean 'poisson_disc'? "
        "Choices: 'random', 'poisson_disc', 'poisson_disc_spread'"
    )
    assert unknown_choice("sampler", 3, SAMPLERS).startswith("sampler: unknown value 3. Choices: 'random'")


def test_it_loads_without_torch_or_numpy() -> None:
    code = "import sys, study._suggest; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
