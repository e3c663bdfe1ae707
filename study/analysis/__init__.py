"""Post-hoc statistics of a study (Dominic et al. 2023, sec. 2.8-2.9; docs/science.md §7).

Pure functions over the per-case table (``docs/per-case-table.md``), no Ray and no MLflow:
:func:`analyze` ranks strategies by one-sided Wilcoxon p against the supervised baseline with
corrections and effect sizes, summarises the transfer study, fits the pretraining-extent power law,
the clinical percent errors, and the effect of each level of each design axis with the axes'
importance (:func:`design_effects`). ``python -m study.analyze`` reads a study folder and prints it.
"""

from __future__ import annotations

from study.analysis._analysis import Analysis, analyze, format_ranking, records
from study.analysis._bayes import bayesian_signed_rank
from study.analysis._best import best_set, pairwise_p
from study.analysis._boundary import boundary_summary
from study.analysis._clinical import clinical_cases, clinical_metrics, clinical_summary
from study.analysis._effects import AXES, chosen_cases, design_effects
from study.analysis._pairing import POOLED_CAVEAT, Pairing, pair_with_baseline
from study.analysis._ranking import RANKING_COLUMNS, optimum, rank_dataset, rank_strategies, seed_stability, top_k_share
from study.analysis._scaling import fit_power_law, power_law, scaling, strategy_extents
from study.analysis._settings import METRICS, PAIRINGS, PAPER_FRACTIONS, SUPERVISED, AnalysisSettings, pooled_fractions
from study.analysis._stats import (
    benjamini_hochberg,
    bootstrap_counts,
    bootstrap_median,
    bootstrap_rank_biserial,
    cases_needed,
    hodges_lehmann,
    holm,
    percentile_ci,
    rank_biserial,
    scipy_method,
    signed_rank_z,
    smallest_p,
    underpowered,
    walsh_order_stats,
    wilcoxon_greater,
)
from study.analysis._tables import case_dice, normalise, select_trials, units
from study.analysis._transfer import configuration, transfer_summary

__all__ = [
    "AXES",
    "METRICS",
    "PAIRINGS",
    "PAPER_FRACTIONS",
    "POOLED_CAVEAT",
    "RANKING_COLUMNS",
    "SUPERVISED",
    "Analysis",
    "Pairing",
    "AnalysisSettings",
    "analyze",
    "bayesian_signed_rank",
    "benjamini_hochberg",
    "best_set",
    "boundary_summary",
    "bootstrap_counts",
    "bootstrap_median",
    "bootstrap_rank_biserial",
    "case_dice",
    "chosen_cases",
    "cases_needed",
    "design_effects",
    "clinical_cases",
    "clinical_metrics",
    "clinical_summary",
    "configuration",
    "fit_power_law",
    "format_ranking",
    "hodges_lehmann",
    "holm",
    "normalise",
    "optimum",
    "pairwise_p",
    "pair_with_baseline",
    "percentile_ci",
    "pooled_fractions",
    "power_law",
    "rank_biserial",
    "rank_dataset",
    "rank_strategies",
    "records",
    "scaling",
    "scipy_method",
    "seed_stability",
    "select_trials",
    "signed_rank_z",
    "smallest_p",
    "strategy_extents",
    "top_k_share",
    "transfer_summary",
    "underpowered",
    "units",
    "walsh_order_stats",
    "wilcoxon_greater",
]
