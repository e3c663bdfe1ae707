"""The study folder on disk: its layout and every read and write of it (``store``, the only code
that names its files), the typed records a trial or a pretraining ends with (``records``) and
the one-driver-per-study lock with its heartbeat (``driver_lock``). Any process on any node
sharing the folder resumes a study from what is kept here."""
