"""The cluster engine against a real Dask cluster: a ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1, started here and stopped at the end (also on failure).

Every result is compared with the local run (``analyze_path(dir).document``, local processes):
a job directory of rank run directories (by path and by ``file://`` URL), the real DLRM ranks,
64 synthetic ranks, a worker SIGKILLed mid-run, a directory served over HTTP by
``python -m http.server`` (documents equal but for the paths: URLs instead of files), and the
one-line errors of a bad rank and of an unreachable scheduler.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.builders import TraceBuilder, job_of, starved_loop, without_paths
from tests.conftest import REPO, SHARED_TRACES
from tracelens.api import analyze_path

distributed = pytest.importorskip("distributed")
pytest.importorskip("fsspec")

DLRM = SHARED_TRACES / "param/train/compute/python/test/data/dlrm_kineto"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not open after {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


@dataclass
class Cluster:
    """A scheduler and worker processes; a client of our own to look at the scheduler."""

    root: Path
    address: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    client: Any = None

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k != "TRACELENS_SCHEDULER"}
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.root, env=env)
        self.procs[name] = proc
        return proc

    def start_scheduler(self) -> None:
        port = free_port()
        proc = self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        wait_for_port(port, proc, self.root / "scheduler.log")
        self.address = f"tcp://127.0.0.1:{port}"
        self.client = distributed.Client(self.address, timeout=30, set_as_default=False)
        self.client.get_task_stream()  # installs the scheduler's task-stream recorder from now on

    def start_worker(self, name: str) -> str:
        """Start a worker (one thread, no nanny: a SIGKILL kills it); its address once joined."""
        before = set(self.workers())
        self._spawn(name, ["worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                           "--host", "127.0.0.1", "--name", name, "--local-directory", str(self.root / name)])
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            new = set(self.workers()) - before
            if new:
                return new.pop()
            if self.procs[name].poll() is not None:
                raise RuntimeError((self.root / f"{name}.log").read_text()[-2000:])
            time.sleep(0.1)
        raise RuntimeError(f"worker {name} did not join")

    def workers(self) -> list[str]:
        return list(self.client.scheduler_info(n_workers=-1)["workers"])

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=5)
        # Workers first, then the scheduler; SIGKILL whatever does not stop within 5 s.
        for name in sorted(self.procs, key=lambda n: n == "scheduler"):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.start_scheduler()
        c.start_worker("w1")
        c.start_worker("w2")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 small ranks, each declaring its rank, with different waits; every 4th one gzipped."""
    d = tmp_path_factory.mktemp("ranks64")
    for r in range(64):
        b = starved_loop(TraceBuilder(rank=r, device_names=("NVIDIA H100",)), steps=3 + r % 5,
                         wait_us=1_000 * (1 + r % 17), compute_us=40_000 + 500 * r)
        b.write(d / (f"host{r}.pt.trace.json" + (".gz" if r % 4 == 0 else "")), compress=r % 4 == 0)
    return d


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 ranks of ~4 MB (40,000 host ops each, tens of ms to analyze), so that a run lasts."""
    d = tmp_path_factory.mktemp("heavy")
    texts = []
    for variant in range(4):
        b = starved_loop(TraceBuilder(rank=0), steps=20, wait_us=5_000 * (variant + 1))
        for k in range(40_000):
            b.op(f"aten::op{k % 50}", (k * 50) % 2_000_000, 20)
        texts.append(b.text(indent=None))
    for r in range(48):
        text = texts[r % 4].replace('"rank": 0,', f'"rank": {r},', 1)
        (d / f"rank{r}.pt.trace.json").write_text(text)
    return d


def tasks_run(cluster: Cluster) -> list[dict[str, Any]]:
    """The scheduler's task-stream records of the last run's rank tasks.

    Keys are ``tracelens-rank-<rank>-<run token>``: the records are those of the newest token
    (the stream's time filter compares clocks and can drop records of tasks that already finished,
    so the whole stream is read and the newest token picks the run).
    """
    ours = [t for t in cluster.client.get_task_stream() if str(t["key"]).startswith("tracelens-rank-")]
    newest = max(ours, key=lambda t: max(s["stop"] for s in t["startstops"]))
    token = str(newest["key"]).rsplit("-", 1)[1]
    return [t for t in ours if str(t["key"]).endswith("-" + token)]


def test_a_job_directory_gives_one_document_by_path_by_file_url_and_on_the_cluster(cluster: Cluster) -> None:
    # GIVEN a job directory of rank run directories (`tracelens profile -- torchrun`), each
    # rank's trace beside its run.json (settings, machine, telemetry)
    job = REPO / "sample_traces" / "ddp_torchrun"
    # WHEN it is analyzed by path and by file:// URL, here and on the cluster
    by_path = analyze_path(job)
    by_url = analyze_path(job.as_uri())
    on_cluster = analyze_path(job, scheduler=cluster.address)
    url_on_cluster = analyze_path(job.as_uri() + "/", scheduler=cluster.address)
    # THEN every route gives the same document (a URL names the files by their URLs) ...
    assert on_cluster.document == by_path.document
    assert without_paths(by_url.document) == without_paths(by_path.document) == without_paths(url_on_cluster.document)
    # ... because every route read each rank's run.json: its telemetry makes the cause io_bound
    # (TL103), where the trace alone could only say input_bound (TL104)
    for doc in (job_of(by_url.document), job_of(url_on_cluster.document)):
        assert [r.diagnosis for r in doc.ranks] == ["io_bound", "io_bound"]
        assert "TL104" not in {f.id for r in doc.ranks for f in r.findings}
    # and one result type: the full analyses come back from local processes, the documents from Dask
    assert [r.run is not None for r in by_url.ranks] == [True, True] and on_cluster.ranks == ()
    assert on_cluster.slowest is None and {o.worker for o in on_cluster.outcomes} <= set(cluster.workers())


@pytest.mark.skipif(not DLRM.is_dir(), reason="../shared/traces is not present")
def test_real_dlrm_ranks_on_the_cluster_equal_the_local_run(cluster: Cluster) -> None:
    result = analyze_path(DLRM, scheduler=cluster.address)
    assert result.document == analyze_path(DLRM).document
    ran = tasks_run(cluster)
    assert len(ran) == 8 and {t["worker"] for t in ran} <= set(cluster.workers())


def test_64_ranks_run_on_the_workers_and_equal_the_local_run(cluster: Cluster, synthetic: Path) -> None:
    progress: list[tuple[int, int, int]] = []
    result = analyze_path(synthetic, scheduler=cluster.address, on_ranks=lambda *a: progress.append(a))
    assert result.document == analyze_path(synthetic).document
    # The scheduler saw every rank task run, on its two workers, and so does each outcome.
    ran = tasks_run(cluster)
    workers = set(cluster.workers())
    assert len({t["key"] for t in ran}) == 64 and {t["worker"] for t in ran} <= workers
    assert {o.worker for o in result.outcomes} == workers
    assert progress[-1] == (64, 64, sum(f.stat().st_size for f in synthetic.iterdir()))


def test_a_directory_served_over_http_equals_the_local_run(cluster: Cluster, synthetic: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(synthetic)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server, Path(os.devnull))
        url = f"http://127.0.0.1:{port}/"
        result = analyze_path(url, scheduler=cluster.address)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.document.source.path == url
    assert job_of(result.document).ranks[5].source.path == f"{url}host5.pt.trace.json"
    assert without_paths(result.document) == without_paths(analyze_path(synthetic).document)


def test_a_bad_rank_is_its_error_line_and_exit_1_the_rest_printed(cluster: Cluster, tmp_path: Path) -> None:
    for r in range(3):
        starved_loop(TraceBuilder(rank=r), steps=2).write(tmp_path / f"rank{r}.json")
    (tmp_path / "rank3.json").write_text("<html>502 Bad Gateway</html>")
    out = subprocess.run([sys.executable, "-m", "tracelens", "analyze", "--json", str(tmp_path),
                          "--scheduler", cluster.address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert [r["rank"] for r in json.loads(out.stdout)["ranks"]] == [0, 1, 2]
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith(f"tracelens: error: rank 3: {tmp_path / 'rank3.json'}: ")
    assert lines[1:] == ["tracelens: error: 1 of 4 ranks failed; the results above are for the other 3"]


def test_a_rank_whose_task_raises_is_retried_then_reported_and_the_others_kept(cluster: Cluster, tmp_path: Path) -> None:
    from tracelens.ranks.cluster import analyze_ranks_on_cluster
    from tracelens.ranks.plan import RankJob

    good = starved_loop(TraceBuilder(rank=1), steps=2).write(tmp_path / "rank1.json")
    # A job without files raises inside the task (not a bad-input error): Dask retries it.
    outcomes = analyze_ranks_on_cluster(cluster.address, [RankJob(0, ()), RankJob(1, (str(good),))], retries=1)
    assert [o.rank for o in outcomes] == [0, 1]
    assert not outcomes[0].ok and outcomes[0].error == ": IndexError: list index out of range"
    assert outcomes[1].ok and outcomes[1].document == analyze_path(good).document
    (key,) = {str(t["key"]) for t in tasks_run(cluster) if str(t["key"]).startswith("tracelens-rank-0-")}
    story = cluster.client.run_on_scheduler(lambda dask_scheduler: [tuple(t[1:3]) for t in dask_scheduler.story(key)])
    # Ran, failed and was put back (the retry), ran again, failed for good.
    runs = [i for i, step in enumerate(story) if step == ("waiting", "processing")]
    assert len(runs) == 2 and story[runs[0] + 1] == ("processing", "released") and story[runs[1] + 1] == ("processing", "erred")


def test_an_unreachable_scheduler_is_one_line_and_exit_1(tmp_path: Path) -> None:
    starved_loop(TraceBuilder(rank=0), steps=2).write(tmp_path / "rank0.json")
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    out = subprocess.run([sys.executable, "-m", "tracelens", "analyze", str(tmp_path), "--scheduler", address],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"tracelens: error: cannot reach the Dask scheduler at {address}: connection refused"]


def test_a_worker_killed_mid_run_changes_nothing(cluster: Cluster, heavy: Path) -> None:
    victim = cluster.start_worker("victim")
    proc = cluster.procs["victim"]
    lost: list[str] = []

    def kill_mid_run(done: int, total: int, _bytes: int) -> None:
        if lost or done < 6:
            return
        processing = cluster.client.run_on_scheduler(
            lambda dask_scheduler, w=victim: [str(ts.key) for ts in dask_scheduler.workers[w].processing])
        if processing:  # the victim is working on ranks: kill it now
            proc.kill()
            proc.wait()
            lost.extend(processing)
            assert done < total

    result = analyze_path(heavy, scheduler=cluster.address, on_ranks=kill_mid_run)
    assert lost, "the victim never had a rank in hand"
    assert result.document == analyze_path(heavy).document
    assert victim not in cluster.workers()
    by_rank = {o.rank: o.worker for o in result.outcomes}
    for key in lost:  # what the victim held was computed again by a survivor
        assert by_rank[int(key.split("-")[2])] not in (victim, None)


def test_a_scheduler_killed_mid_run_is_one_line_and_exit_1(tmp_path: Path, heavy: Path) -> None:
    # GIVEN a cluster of its own (its scheduler dies here) and a run of the heavy ranks on it
    own = Cluster(tmp_path)
    try:
        own.start_scheduler()
        own.start_worker("w")
        proc = subprocess.Popen([sys.executable, "-m", "tracelens", "analyze", str(heavy), "--scheduler", own.address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and not any(own.client.processing().values()):
            time.sleep(0.05)
        # WHEN the scheduler is killed while ranks are being analyzed
        own.procs["scheduler"].kill()
        _, err = proc.communicate(timeout=120)
    finally:
        own.stop()
    # THEN one line of tracelens' own (issue 21 item 6: Dask's reconnect log was 36 lines, two tracebacks)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tracelens: error: lost the Dask scheduler at {own.address}")
