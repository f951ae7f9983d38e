"""Where a recording goes: the run directory claimed for it, whoever records.

Torch-free, shared by ``tracelens profile`` (:mod:`tracelens.capture.parent.profile`, the
ranks of a torchrun job) and ``with tracelens.profile()`` (:mod:`tracelens.capture.script.inline`).
Outside a job the run directory is ``--out`` or a fresh ``runs_root/<stem>-<YYYYmmdd-HHMMSS>``;
inside a rank of a job (``RANK`` / ``WORLD_SIZE`` set by the launcher) it is
``OUT/rank-<RANK>``, OUT being ``--out`` or ``runs_root/<stem>-<job>``. Every directory is
claimed atomically first (:mod:`tracelens.system.rundirs`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tracelens.capture.options import ProfileOptions
from tracelens.errors import UsageError
from tracelens.system.nodeclaims import COMBINED_MARK, is_member
from tracelens.system.rundirs import (
    RANK_DIR_PREFIX,
    claim_dir,
    claim_holder,
    claim_new_dir,
    holder_alive,
    process_start,
)

#: Set by a ``tracelens profile -- torchrun`` process for its ranks: that process combines.
JOB_PARENT_ENV = "TRACELENS_JOB_PARENT"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class RankEnv:
    """This process's place in a distributed job, from the launcher's environment."""

    rank: int
    world_size: int
    local_rank: int | None
    run_id: str | None  # TORCHELASTIC_RUN_ID unless unset or ``none``


def rank_env(environ: dict[str, str] | None = None) -> RankEnv | None:
    """``RANK`` and ``WORLD_SIZE`` (with 0 ≤ RANK < WORLD_SIZE) as set by torchrun; None outside a job."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    if not 0 <= rank < world:
        return None
    local = env.get("LOCAL_RANK", "")
    run_id = env.get("TORCHELASTIC_RUN_ID") or None
    return RankEnv(rank, world, int(local) if local.isdigit() else None,
                   None if run_id in (None, "none") else run_id)


def parent_combines() -> bool:
    """Whether a ``tracelens profile -- torchrun`` process launched this rank (it combines)."""
    return bool(os.environ.get(JOB_PARENT_ENV))


def job_label(rank: RankEnv) -> str:
    """The part of a default job directory's name the ranks of one job share."""
    if rank.run_id:
        rid = rank.run_id[:8] if _UUID.match(rank.run_id) else rank.run_id
        return re.sub(r"[^A-Za-z0-9_.-]", "_", rid)[:40]
    launcher = os.getppid()
    started = process_start(launcher)
    stamp = datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S") if started else "job"
    return f"{stamp}-{launcher}"


def claim_rank_dir(options: ProfileOptions, rank: RankEnv) -> Path:
    """Claim ``OUT/rank-<RANK>`` (OUT: ``--out``, else ``runs_root/<stem>-<job>``)."""
    job_dir = options.out if options.out is not None else options.runs_root / f"{options.stem}-{job_label(rank)}"
    job_dir.mkdir(parents=True, exist_ok=True)
    holder = claim_holder(job_dir)
    parent = os.environ.get(JOB_PARENT_ENV, "")
    ours = str(holder.get("pid")) == parent if holder is not None else True
    if not ours and parent.isdigit() and is_member(job_dir, int(parent)):
        ours = True  # another node's launcher claimed OUT; ours joined it
    if not ours and holder is not None and holder_alive(holder):
        raise UsageError(f"{job_dir}: another tracelens run (pid {holder.get('pid')}) is writing this "
                         "directory; choose another --out")
    run_dir = job_dir / f"{RANK_DIR_PREFIX}{rank.rank}"
    claim_dir(run_dir, force=options.force)
    if options.force and not parent_combines():  # an old job's analysis must not outlive it
        for name in ("analysis.json", "report.html", COMBINED_MARK):
            (job_dir / name).unlink(missing_ok=True)
    return run_dir


def default_run_dir(options: ProfileOptions, now: datetime | None = None) -> Path:
    """Create and claim ``<runs_root>/<stem>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken)."""
    return claim_new_dir(options.runs_root, options.stem, now)


def claim_run_dir(options: ProfileOptions, rank: RankEnv | None) -> Path:
    """The run directory of this process, claimed: ``OUT/rank-<RANK>`` inside a job, else
    ``--out`` or a fresh default directory."""
    if rank is not None:
        return claim_rank_dir(options, rank)
    if options.out is None:
        return default_run_dir(options)
    claim_dir(options.out, force=options.force)
    return options.out
