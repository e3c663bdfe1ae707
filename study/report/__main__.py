"""``python -m study.report STUDY``: write the study's HTML dashboard and its figures.

    python -m study.report pretext                 # studies/pretext/report/report.html
    python -m study.report /shared/studies/transfer --open
"""

from __future__ import annotations

import webbrowser
from typing import Sequence

from study._cli import ArgumentParser, run_main
from study.analysis import AnalysisSettings
from study.analyze import find_study, load_study


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m study.report", description=__doc__.splitlines()[0])
    p.add_argument("study", help="a study folder, or a study name under ./studies")
    p.add_argument("--top-k", type=int, default=3, help="top k of every data set = the optimum (default 3)")
    p.add_argument("--open", action="store_true", help="open the report in a browser")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store = find_study(args.study)
    state, table, _ = load_study(store)
    from study.report import build_report

    path = build_report(store, state, table, store.results(), settings=AnalysisSettings(top_k=args.top_k))
    print(f"report: {path}")
    print(f"figures (PNG and SVG): {path.parent / 'figures'}")
    if args.open:
        webbrowser.open(path.as_uri())
    return 0


if __name__ == "__main__":
    run_main(main)
