"""Spec -> plan, without Ray: counts, stable ids, shared pretraining keys, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.design.plan import make_plan, resolve
from study.design.spec_loading import load_spec
from study.errors import SpecError

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def test_the_pretext_grid_has_the_papers_shape() -> None:
    plan = make_plan(load_spec(SPACES / "pretext.yaml"))
    # 2 tasks x 4 patch sizes x 2 samplers = 16 strategies + the baseline, x 2 fractions x 2 data
    # sets x 2 seeds (a seed is a replicate: its own pretrainings, batches and masks)
    assert len(plan.trials) == 17 * 2 * 2 * 2
    assert len({t.id for t in plan.trials}) == len(plan.trials)
    assert len(plan.pretrainings()) == 16 * 2 * 2  # shared by the label fractions
    assert plan.by_dataset() == {"mri": (68, 32), "ct": (68, 32)}
    assert sum(t.pretraining is None for t in plan.trials) == 8


def test_ids_are_stable_and_an_enlarged_space_keeps_the_old_points() -> None:
    small = make_plan(load_spec(SPACES / "pretext.yaml"))
    again = make_plan(load_spec(SPACES / "pretext.yaml"))
    big = make_plan(load_spec(SPACES / "pretext.yaml", ["label_fractions=[0.05,0.25,0.5,1.0]"]))
    assert [t.id for t in small.trials] == [t.id for t in again.trials]
    assert {t.id for t in small.trials} < {t.id for t in big.trials}
    assert len(big.trials) - len(small.trials) == 17 * 2 * 2 * 2  # two new fractions, two data sets, two seeds


def test_fine_tuning_axes_share_a_pretraining() -> None:
    plan = make_plan(load_spec(SPACES / "pretext.yaml", ["finetuning.lr=[0.001,0.0001]", "datasets=[mri]"]))
    assert len(plan.pretrainings()) == 16 * 2  # per seed
    assert len(plan.trials) == (16 * 2 + 2) * 2 * 2  # the baseline takes the fine-tuning lr axis too


def test_scale_and_seed_change_the_trial_id() -> None:
    base = make_plan(load_spec(SPACES / "smoke.yaml")).trials[0]
    for override in ("seed=1", "scale.finetune_max_epochs=3", "split_seed=2"):
        other = make_plan(load_spec(SPACES / "smoke.yaml", [override])).trials[0]
        assert other.id != base.id, override


def test_a_sampled_baseline_ignores_pretraining_axes() -> None:
    spec = load_spec(SPACES / "bayes.yaml")
    a = resolve(
        spec,
        "mri",
        {"pretraining.task": "none", "pretraining.patch_size": 8, "finetuning.lr": 1e-3, "label_fraction": 0.05},
    )
    b = resolve(
        spec,
        "mri",
        {"pretraining.task": "none", "pretraining.patch_size": 64, "finetuning.lr": 1e-3, "label_fraction": 0.05},
    )
    assert a.id == b.id and a.pretraining is None and a.scope == "none"


def test_overrides_reach_nested_fields_and_profiles() -> None:
    spec = load_spec(SPACES / "pretext.yaml", ["scale=paper", "resources.gpus_per_trial=0.25"])
    assert spec.scale.image_size == 512 and spec.scale.widths == (32, 64, 128, 256, 512)
    assert spec.resources.gpus_per_trial == 0.25
    spec = load_spec(SPACES / "pretext.yaml", ["scale.finetune_max_epochs=3"])
    assert spec.scale.profile == "laptop" and spec.scale.finetune_max_epochs == 3


@pytest.mark.parametrize("space", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_every_shipped_space_is_valid_and_says_what_it_answers(space: str) -> None:
    text = (SPACES / space).read_text()
    assert text.startswith("# Question:"), space
    spec = load_spec(SPACES / space)
    plan = make_plan(spec)
    assert plan.num_samples() >= 1


def test_a_spec_error_names_the_field() -> None:
    with pytest.raises(SpecError, match=r"pretraining\.sampler: 'poisson' is not one of"):
        load_spec(SPACES / "pretext.yaml", ["pretraining.sampler=[poisson]"])


def test_configurations_that_train_alike_are_merged() -> None:
    plan = make_plan(load_spec(SPACES / "transfer.yaml"))
    # 2 scopes x 2 schedules x 2 lr x 2 unfrozen lr + 2 baselines = 18 grid points; at_once ignores the
    # unfrozen lr (4 merged), and freeze_then_unfreeze at lr 0.001 with null or 0.001 is one (2 merged)
    assert plan.grid_points == 18 and len(plan.trials) == 12
    unfrozen = {(t.scope, t.schedule, t.lr, t.unfrozen_lr) for t in plan.trials if t.pretraining}
    assert all(u is None for s, sched, lr, u in unfrozen if sched == "at_once")
    assert ("encoder", "freeze_then_unfreeze", 0.01, 0.001) in unfrozen
    assert not any(u == lr for *_, lr, u in unfrozen)


def test_replicate_seeds_run_every_trial_once_per_seed_with_their_own_pretraining() -> None:
    one = make_plan(load_spec(SPACES / "smoke.yaml"))
    three = make_plan(load_spec(SPACES / "smoke.yaml", ["seeds=[11725701,1,2]"]))
    assert len(three.trials) == 3 * len(one.trials) and len(three.pretrainings()) == 3
    assert {t.seed for t in three.trials} == {11725701, 1, 2} and {t.split_seed for t in three.trials} == {0}
    # the first seed is the default one: its trials are the single-seed study's, same ids
    assert {t.id for t in one.trials} <= {t.id for t in three.trials}
    as_list = make_plan(load_spec(SPACES / "smoke.yaml", ["seed=[11725701,1,2]"]))
    assert [t.id for t in as_list.trials] == [t.id for t in three.trials]
    splits = make_plan(load_spec(SPACES / "smoke.yaml", ["seeds=[0,1]", "split_seeds=[5,6]"]))
    assert {(t.seed, t.split_seed) for t in splits.trials} == {(0, 5), (1, 6)}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seeds=[1,1]", "lists a seed twice"),
        ("split_seeds=[1,2,3]", "give one, or one per seed"),
        ("seeds=[]", "at least one seed"),
    ],
)
def test_bad_seed_lists_are_refused(override: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        load_spec(SPACES / "smoke.yaml", [override, "seeds=[0,1]"] if "split" in override else [override])


def test_replicates_need_a_grid() -> None:
    with pytest.raises(SpecError, match="replicates need search.algorithm 'grid'"):
        load_spec(SPACES / "bayes.yaml", ["seeds=[0,1]"])
