"""``python -m study.train``: one trial on one data set, exactly as a study runs it. The command is the
study's (it plans, stores and tracks like one): it lives in :mod:`study.execution.single_trial`, so
the training core itself imports nothing of the orchestration."""

from study._cli import run_main
from study.execution.single_trial import main

if __name__ == "__main__":
    run_main(main)
