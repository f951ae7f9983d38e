"""``profile --tensorboard DIR``: the trace in TensorBoard's profiler layout, per-step scalars, and after
the analysis each step's breakdown with the verdict and the recommendation as text."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from tracelens.document.schema import PART_FIELDS, Document
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


def write_analysis_summary(document: Document, logdir: Path) -> list[str]:
    """After the analysis, beside the raw scalars: each step's breakdown and exposed data wait as
    scalars (``tracelens/step/<part>_ms``, ``tracelens/exposed_wait_ms``), and the verdict and the
    recommendation as a text summary. Torch-free (tensorboard's own event writer); the notes say
    what was skipped."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING
        from tensorboard.plugins.text.metadata import create_summary_metadata
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except Exception as exc:  # tensorboard not installed
        return [f"--tensorboard: the analysis summary skipped ({exc})"]
    from tracelens.render.wording import settings_call, verdict_sentence
    from tracelens.vocab import SETTING_KEYS

    writer = EventFileWriter(str(logdir), filename_suffix=".tracelens")
    now = time.time()
    try:
        for i, row in enumerate(document.per_step):
            values = [Summary.Value(tag="tracelens/exposed_wait_ms", simple_value=float(row.exposed_wait_ms or 0.0))]
            values += [Summary.Value(tag=f"tracelens/step/{name}", simple_value=float(getattr(row, f"part_{name}") or 0.0))
                       for name in PART_FIELDS]
            writer.add_event(Event(wall_time=now, step=i, summary=Summary(value=values)))
        rec = document.recommendation
        text = (f"**{document.diagnosis.replace('_', ' ').upper()}**: {verdict_sentence(document)}\n\n"
                f"Recommended: `{settings_call({k: getattr(rec, k) for k in SETTING_KEYS})}`\n\n"
                + "\n\n".join(f"- {n}" for n in rec.notes))
        # the text plugin's summary, built from its protos (its own helper needs TensorFlow)
        value = Summary.Value(tag="tracelens/verdict", tensor=TensorProto(dtype=DT_STRING, string_val=[text.encode()]),
                              metadata=create_summary_metadata(display_name="tracelens verdict", description=""))
        writer.add_event(Event(wall_time=now, step=0, summary=Summary(value=[value])))
    finally:
        writer.close()
    return []
