"""``profile --tensorboard DIR`` after the analysis: each step's breakdown and exposed data wait
as scalars, the verdict and the recommendation as a text summary, beside the raw per-batch
scalars the recording wrote. Torch-free and TensorFlow-free: tensorboard's own event writer and
the text plugin's protos."""

from __future__ import annotations

import time
from pathlib import Path

from tracelens.document.schema import PART_FIELDS, Document
from tracelens.render.wording import settings_call, verdict_sentence
from tracelens.vocab import SETTING_KEYS


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
