"""What tracelens asks of the operating system, below every stage of the pipeline.

- ``procs``: child processes that end with their caller (process groups, worker pools that die
  with their parent, SIGTERM as :class:`~tracelens.system.procs.Terminated`), and the cores to
  size them by;
- ``rundirs``: where outputs go, and run directories claimed by one process at a time.
"""
