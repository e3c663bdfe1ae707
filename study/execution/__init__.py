"""Running a checked study: the driver (``driver``), the Ray Tune + Optuna glue (``tune``), one
trial from pretraining to evaluation around the science core (``trial``), statistical early
stopping and the searcher that runs a grid rung by rung (``pruning``, ``rung_search``), the
driver's live view and Tune callback (``progress``) and the fault injection of the
reliability suite (``faults``)."""
