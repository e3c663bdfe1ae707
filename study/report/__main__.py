"""``python -m study.report STUDY``: write the study's HTML dashboard and its figures.

Examples:
    python -m study.report pretext                 # studies/pretext/report/report.html
    python -m study.report search_spaces/pretext.yaml   # the study that spec names, in its storage
    python -m study.report transfer --storage /shared/studies --open
"""

from __future__ import annotations

import webbrowser
from collections.abc import Sequence

from study._cli import ArgumentParser, run_main
from study.analysis import PAIRINGS, AnalysisSettings
from study.analyze import find_study, load_study, spec_settings


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.report", doc=__doc__)
    p.add_argument(
        "study",
        help="a study folder, a study's spec file (found in the spec's storage), or a study name under --storage",
    )
    p.add_argument("--storage", help="the folder of study folders a name is looked up in (default ./studies)")
    p.add_argument("--top-k", type=int, help="P(top-k), the ranking's spread under resampling (default: the spec's, 3)")
    p.add_argument("--pairing", choices=PAIRINGS, help="per_case or pooled (default: the spec's, per_case)")
    p.add_argument("--open", action="store_true", help="open the report in a browser")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = find_study(args.study, args.storage)
    loaded = load_study(store)
    from study.report import build_report

    settings = AnalysisSettings(**spec_settings(loaded.state, pairing=args.pairing, top_k=args.top_k))
    path = build_report(store, loaded.state, loaded.table, store.results(), settings=settings)
    print(f"report: {path}")
    print(f"figures (PNG and SVG): {path.parent / 'figures'}")
    if args.open:
        webbrowser.open(path.as_uri())
    return 0


if __name__ == "__main__":
    run_main(main)
