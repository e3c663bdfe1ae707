"""Checks before a study spends its compute, shown by ``--dry-run``: what it will train and store
(``footprint``, ``workload``), one trial's GPU memory and the study's GPU time (``gpu``), the
Ray cluster it runs on and how many trials fit at once (``cluster``) and whether its data sets
can answer it at all (``power_check``)."""
