"""A location becomes ranks, and the ranks are analyzed: one planner, one engine, one result.

- ``store``: a local path or an fsspec URL listed and read the same way (headers, spooling);
- ``plan``: the one lister: a file, a run directory, or a directory of ranks (run directories
  with their run.json, loose traces) into :class:`~tracelens.ranks.plan.RankJob` s;
- ``engine``: one rank through the pipeline (load -> analysis -> diagnosis -> document), the
  ranks in this process or on a local pool that dies with it, and the :class:`Result` assembled;
- ``cluster``: the same job function on Dask workers (only the documents come back).

Every route (path or URL, local or ``--scheduler``) goes plan -> run -> assemble, so they all
give the same document. The entry point is :func:`tracelens.api.analyze_path`.
"""
