"""What a study shows outside its folder: its MLflow runs (``mlflow_runs``), the tracking URI
checked before anything is logged (``uri``), the Optuna view of its search for
optuna-dashboard (``optuna_view``) and the provenance of its results: code version, package
versions, invocations (``provenance``). Only the driver process writes here."""
