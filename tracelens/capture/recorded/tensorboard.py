"""``profile --tensorboard DIR``: the trace in TensorBoard's profiler layout plus per-step scalars."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from tracelens.runjson import RunInfo


def write_tensorboard(run: RunInfo, trace_path: Path | None, tb_root: Path,
                      run_name: str) -> tuple[Path, list[str]]:
    """Copy the trace where ``tensorboard_trace_handler`` would write it and log the data wait
    and step time of every batch of the window's loader (the training loader) as scalars; the
    directory and notes on what was skipped."""
    out = tb_root / run_name
    out.mkdir(parents=True, exist_ok=True)
    if trace_path is not None:
        ms = int(time.time() * 1000)
        shutil.copyfile(trace_path, out / f"{socket.gethostname()}_{os.getpid()}.{ms}.pt.trace.json.gz")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # tensorboard not installed
        return out, [f"--tensorboard: scalars skipped ({exc})"]
    rows = run.batches_of(run.window.loader_id)
    writer = SummaryWriter(log_dir=str(out))
    try:
        for i, (start, wait) in enumerate(rows):
            writer.add_scalar("tracelens/data_wait_ms", wait / 1000.0, i)
            if i + 1 < len(rows):
                writer.add_scalar("tracelens/step_time_ms", (rows[i + 1][0] - start) / 1000.0, i)
    finally:
        writer.close()
    return out, []
