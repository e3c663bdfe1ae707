"""What a study is, before anything runs: the validated spec and its YAML reading (``spec``,
``spec_loading``), the registry of design axes (``axes``), how big a trial is (``scale``) and
the plan that expands the axes into trials and the pretrainings they share (``plan``). Light
on purpose: parsing a spec or planning a study imports no torch, numpy or pandas."""
