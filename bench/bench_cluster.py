"""Benchmark: the Dask cluster engine against local processes, on the same cores.

1. Builds ``--ranks`` rank traces of about ``--size-mb`` MB each (default 256 x 20 MB) from a
   real trace (``hta/.../trace_diff/control``): its events evenly thinned to the size (every
   step and DataLoader event kept), ``distributedInfo.rank`` set per file; gzipped unless
   ``--plain`` (5 GB of .json did not stay in this shared machine's page cache, and disk reads
   swamped the comparison).
2. Starts a local cluster: ``dask scheduler`` + ``--workers`` ``dask worker --nthreads 1``
   (as many workers as local processes; Dask's sampling profiler off unless ``--dask-profile``), then times ``tracelens analyze DIR --json`` with
   local processes and with ``--scheduler``, alternating, ``--runs`` times each, each in a
   fresh client process; medians of wall time and of the CPU seconds the run cost (client,
   its children, and the cluster's processes), the ratios, and the client's peak memory (PSS
   or RSS of its process tree, as bench_analyze.py measures). The JSON outputs must be equal.
3. At scale on the client: ``--scale-ranks`` (default 4096) small ranks through the same
   cluster in this process: wall time, client RSS growth and result bytes per rank.
4. Spooling: the rank files served by ``python -m http.server``; MB/s and peak RSS of
   :func:`tracelens.ranks.store.spool` in a fresh process.

    python bench/bench_cluster.py [--ranks 256] [--size-mb 20] [--runs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import pickle
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared/traces/hta/tests/data/trace_diff/control/control.json.gz"
EVENTS = re.compile(rb'"traceEvents"\s*:\s*\[')
SEPARATOR = b"\n  },\n  {"  # between two top-level events as Kineto indents them
KEEP = (b"ProfilerStep#", b"enumerate(DataLoader)")
RANK = re.compile(rb'("distributedInfo"\s*:\s*\{[^}]*"rank"\s*:\s*)\d+')


# --- traces ------------------------------------------------------------------------------


def thinned_parts(source: Path, size_mb: float) -> tuple[bytes, bytes, bytes]:
    """(header, events, tail) of ``source`` with its events evenly thinned to about ``size_mb``."""
    raw = source.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    m = EVENTS.search(raw)
    if m is None:
        raise SystemExit(f"{source}: no traceEvents")
    end = raw.rindex(b"]")
    head, body, tail = raw[: m.end()], raw[m.end() : end].strip(), raw[end:]
    events = body.split(SEPARATOR)
    keep = min(1.0, size_mb * 1e6 / len(body))
    kept, credit = [], 0.0
    for i, ev in enumerate(events):
        credit += keep
        if credit >= 1.0 or any(k in ev for k in KEEP) or i in (0, len(events) - 1):
            kept.append(ev)
            credit = max(0.0, credit - 1.0)
    return head, SEPARATOR.join(kept), tail


def make_ranks(out: Path, source: Path, ranks: int, size_mb: float, compress: bool = False) -> list[Path]:
    """``ranks`` files ``rank<N>.pt.trace.json[.gz]`` (kept if already there)."""
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".pt.trace.json.gz" if compress else ".pt.trace.json"
    files = [out / f"rank{r}{suffix}" for r in range(ranks)]
    stale = [f for f in out.glob("rank*.pt.trace.json*") if f not in set(files)]
    for f in stale:
        f.unlink()
    if all(f.exists() for f in files):
        return files
    head, events, tail = thinned_parts(source, size_mb)
    for r, f in enumerate(files):
        data = RANK.sub(rb"\g<1>%d" % r, head, count=1) + b"\n  " + events + b"\n  " + tail
        f.write_bytes(gzip.compress(data, 6) if compress else data)
        print(f"\rwriting ranks: {r + 1}/{ranks}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return files


# --- a local cluster ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The worker settings docs/cluster.md recommends for workers that only run tracelens: the event
#: loop's 20 ms tick and 0.5 s system monitor wake the worker beside every task (~12 % of the
#: task CPU on 2 cores); Dask's sampling profiler samples the task's thread every 10 ms.
QUIET_WORKERS = {"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1000ms",
                 "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5000ms"}


@contextlib.contextmanager
def local_cluster(workers: int, logs: Path, profile: bool = False, nanny: bool = True,
                  quiet: bool = True) -> Any:
    """A ``dask scheduler`` and ``workers`` one-thread ``dask worker`` processes.

    Yields its address and processes. ``profile``: keep Dask's sampling profiler on in the
    workers (its default; docs/cluster.md recommends it off for dedicated workers).
    ``nanny``: start each worker under a nanny process (Dask's default). ``quiet``: the
    :data:`QUIET_WORKERS` settings (else Dask's defaults).
    """
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=str(profile))
    if quiet:
        env.update(QUIET_WORKERS)

    def spawn(name: str, args: list[str]) -> None:
        with (logs / f"{name}.log").open("wb") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                          stderr=subprocess.STDOUT, env=env))

    try:
        spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        for i in range(workers):
            spawn(f"worker{i}", ["worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                                 "--local-directory", str(logs / f"worker{i}"), "--nanny" if nanny else "--no-nanny"])
        from distributed import Client

        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout=5, set_as_default=False) as c:
                    c.wait_for_workers(workers, timeout=120)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address, [psutil.Process(p.pid) for p in procs]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# --- measuring ---------------------------------------------------------------------------


def _memory(p: psutil.Process) -> int:
    try:
        return int(p.memory_full_info().pss)
    except (AttributeError, psutil.AccessDenied):
        return int(p.memory_info().rss)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of running ``procs`` and their children so far."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
    return total


def measure(cmd: list[str], stdout: Path, cluster: list[psutil.Process]) -> tuple[float, float, float]:
    """(wall s, peak memory of the client's process tree in MB, CPU s) of one run of ``cmd``.

    CPU counts the client and its children (local processes) plus, for a cluster run, what the
    scheduler, nannies and workers used meanwhile: what the run cost the machine, whatever
    else was running on it.
    """
    env = {k: v for k, v in os.environ.items() if k != "TRACELENS_SCHEDULER"}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster0 = cpu_seconds(cluster)
    t0 = time.perf_counter()
    with stdout.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, env=env)
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, sum(_memory(p) for p in [root, *root.children(recursive=True)] if p.is_running()))
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime
           + cpu_seconds(cluster) - cluster0)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return wall, peak / 1e6, cpu


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def compare(directory: Path, address: str, cluster: list[psutil.Process], runs: int, work: Path) -> dict[str, Any]:
    """Local processes vs the cluster, alternating; medians and the outputs' equality."""
    base = [sys.executable, "-m", "tracelens", "analyze", str(directory), "--json"]
    cmds = {"local processes": (base, []), "dask cluster": ([*base, "--scheduler", address], cluster)}
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cmds}
    loads = [load()]
    for i in range(runs):
        for name, (cmd, procs) in cmds.items():
            times[name].append(measure(cmd, work / f"{name.split()[0]}.json", procs))
            loads.append(load())
            w, m, c = times[name][-1]
            print(f"  run {i + 1}/{runs} {name}: {w:.2f} s, {c:.1f} CPU s, client {m:.0f} MB (load {loads[-1]})", file=sys.stderr)
    same = (work / "local.json").read_bytes() == (work / "dask.json").read_bytes()
    return {"medians": {k: tuple(statistics.median(r[j] for r in v) for j in range(3)) for k, v in times.items()},
            "runs": times, "identical": same, "loads": loads}


def per_rank(directory: Path, address: str) -> dict[str, Any]:
    """Per-rank numbers of one cluster run made in this process: bytes, result size, worker time.

    Run first: its wall time includes the workers' first imports of tracelens.
    """
    from tracelens.document.schema import encode_document
    from tracelens.ranks.cluster import analyze_ranks_on_cluster
    from tracelens.ranks.plan import plan

    jobs = plan(directory).jobs
    t0 = time.perf_counter()
    outcomes = analyze_ranks_on_cluster(address, jobs)
    return {
        "first_run_s": time.perf_counter() - t0,  # fresh workers: they import tracelens on the first task
        "file_mb": statistics.median(o.bytes_read for o in outcomes) / 1e6,
        "doc_kb": statistics.median(len(encode_document(o.document)) for o in outcomes if o.document) / 1e3,
        "pickled_kb": statistics.median(len(pickle.dumps(o)) for o in outcomes) / 1e3,
        "worker_s": statistics.median(o.seconds for o in outcomes),
        "json_mb": len(_uncompressed(Path(jobs[0].paths[0]))) / 1e6,
    }


def _uncompressed(p: Path) -> bytes:
    raw = p.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def at_scale(address: str, source: Path, ranks: int, work: Path) -> dict[str, Any]:
    """``ranks`` small ranks (the real trace thinned to ~0.2 MB) on the cluster from this process."""
    import gc

    from tracelens.document.build import build_multirank_document
    from tracelens.document.schema import encode_document
    from tracelens.ranks.cluster import analyze_ranks_on_cluster
    from tracelens.ranks.plan import plan

    directory = work / f"small{ranks}"
    make_ranks(directory, source, ranks, 0.2)
    jobs = plan(directory).jobs
    me = psutil.Process()
    gc.collect()
    rss0 = me.memory_info().rss
    t0 = time.perf_counter()
    outcomes = analyze_ranks_on_cluster(address, jobs)
    wall = time.perf_counter() - t0
    doc = build_multirank_document([o.document for o in outcomes if o.document is not None], str(directory))
    gc.collect()
    rss1 = me.memory_info().rss
    return {"ranks": ranks, "wall_s": wall, "rss_kb_per_rank": (rss1 - rss0) / 1e3 / ranks,
            "doc_kb_per_rank": len(encode_document(doc)) / 1e3 / ranks, "worker_s": statistics.median(o.seconds for o in outcomes),
            "failed": sum(not o.ok for o in outcomes)}


SPOOL_PROBE = """
import json, sys, tempfile, time
from pathlib import Path
import aiohttp, fsspec, fsspec.implementations.http
from tracelens.ranks.store import spool

def peak_mb():  # VmHWM: this process's peak RSS (ru_maxrss can carry the parent's from fork)
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024

urls, d = sys.argv[2:], tempfile.mkdtemp()
imported = peak_mb()
p, _ = spool(urls[0], d); p.unlink()  # warm: the event loop, the connection pool
base = peak_mb()
t0, n = time.perf_counter(), 0
for u in urls:
    p, k = spool(u, d, block=int(sys.argv[1])); n += k; p.unlink()
dt = time.perf_counter() - t0
print(json.dumps({"mb": n / 1e6, "files": len(urls), "s": dt, "imported_peak_rss_mb": imported,
                  "after_first_file_peak_rss_mb": base, "peak_rss_mb": peak_mb()}))
"""


def spool_cost(directory: Path, files: list[Path], block: int) -> dict[str, Any]:
    """Spool ``files`` from a local ``python -m http.server``: MB/s and peak RSS of the process."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        urls = [f"http://127.0.0.1:{port}/{f.name}" for f in files]
        out = subprocess.run([sys.executable, "-c", SPOOL_PROBE, str(block), *urls], capture_output=True, text=True, check=True)
    finally:
        server.terminate()
        server.wait()
    r: dict[str, Any] = json.loads(out.stdout)
    r["mb_s"] = r["mb"] / r["s"]
    r["block_mb"] = block / 2**20
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--ranks", type=int, default=256)
    ap.add_argument("--size-mb", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="cluster workers = local processes")
    ap.add_argument("--scale-ranks", type=int, default=4096)
    ap.add_argument("--dask-profile", action="store_true", help="keep Dask's sampling profiler on in the workers")
    ap.add_argument("--no-nanny", action="store_true", help="start the workers without nanny processes")
    ap.add_argument("--dask-ticks", action="store_true",
                    help="keep Dask's default 20 ms tick and 0.5 s system monitor (default: QUIET_WORKERS)")
    ap.add_argument("--plain", action="store_true",
                    help="write the ranks as .json (default .json.gz, which stays in the page cache, so that "
                         "disk reads do not swamp what is compared)")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "cluster")
    a = ap.parse_args()
    directory = a.out / (f"ranks{a.ranks}" + ("" if a.plain else "-gz"))
    files = make_ranks(directory, a.source, a.ranks, a.size_mb, compress=not a.plain)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"{a.ranks} ranks of ~{a.size_mb:g} MB, {total_mb / a.ranks:.1f} MB each on disk, {total_mb / 1e3:.2f} GB; "
          f"{os.cpu_count()} cores; load {load()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp, local_cluster(a.workers, a.out / "logs", a.dask_profile, not a.no_nanny,
                                                                 not a.dask_ticks) as (address, cluster):
        work = Path(tmp)
        # per_rank first: it warms the workers (imports) and the page cache for both modes alike.
        result: dict[str, Any] = {"ranks": a.ranks, "total_gb": total_mb / 1e3, "cores": os.cpu_count(),
                                  "workers": a.workers, "dask_profile": a.dask_profile, "nanny": not a.no_nanny,
                                  "quiet_workers": not a.dask_ticks,
                                  "per_rank": per_rank(directory, address)}
        result["compare"] = compare(directory, address, cluster, a.runs, work)
        result["scale"] = at_scale(address, a.source, a.scale_ranks, a.out)
        result["load_end"] = load()
    plain = make_ranks(a.out / "spool16", a.source, 16, a.size_mb)  # uncompressed, to measure the copy itself
    result["spool"] = spool_cost(a.out / "spool16", plain, 8 << 20)
    med = result["compare"]["medians"]
    (local, _, local_cpu), (dask, _, dask_cpu) = med["local processes"], med["dask cluster"]
    result["overhead"] = {"wall": dask / local - 1, "cpu": dask_cpu / local_cpu - 1}
    print(json.dumps(result, indent=1, default=str))
    print(f"\nlocal {local:.2f} s / {local_cpu:.1f} CPU s, cluster {dask:.2f} s / {dask_cpu:.1f} CPU s: "
          f"overhead {100 * result['overhead']['wall']:+.1f} % wall, {100 * result['overhead']['cpu']:+.1f} % CPU; "
          f"identical output: {result['compare']['identical']}", file=sys.stderr)


if __name__ == "__main__":
    main()
