"""The ``tracelens profile`` process (torch-free): claim the run directory, supervise the
recording child, launch a torchrun job's ranks, hand the recording to the caller's analysis."""
