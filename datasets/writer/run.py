"""The run loop of the video shard writer: :func:`write_shards` decodes inputs (in worker processes), fills
shards in order, commits each and lists it in the manifest; the package docstring says how it resumes."""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from ..recipes import Source
from .encoding import process_source
from .manifest import Manifest, RunLock, check_run_settings, clean_leftovers
from .settings import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    MIN_CLIP_FRAMES,
    ShardSettings,
    SourceResult,
    Summary,
    WorkerDied,
    partition_sources,
    shard_prefix,
)
from .tar_files import ShardFile, iter_spool, tar_bytes, tar_file_bytes


def _init_worker():
    # the pool is the parallelism: one compute thread per process (read by torch when the procedural
    # recipe imports it; decoding-only workers never pay for importing torch)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"[make_shards] {message}", file=sys.stderr)  # keeps an active progress bar intact


def _results(
    pending: list[Source], settings: ShardSettings, spool_of: Callable[[int], Path], workers: int
) -> Iterator[SourceResult]:
    """:class:`SourceResult` of each pending source, in order; with ``workers > 1`` from a process pool.

    A worker that dies raises :class:`WorkerDied` here (``concurrent.futures`` notices a dead
    process; ``multiprocessing.Pool`` would wait for its result forever).
    """
    if workers <= 1 or len(pending) <= 1:
        for i, source in enumerate(pending):
            yield process_source(source, settings, spool_of(i))
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn: workers must not inherit the threads of torch or of a PyAV decoder in this process
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
    futures: deque = deque()
    try:
        submitted = 0
        while submitted < len(pending) or futures:
            while (
                submitted < len(pending) and len(futures) < 2 * workers
            ):  # bounded: spools wait on disk, not in memory
                futures.append(
                    (pending[submitted], pool.submit(process_source, pending[submitted], settings, spool_of(submitted)))
                )
                submitted += 1
            source, future = futures.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                raise WorkerDied(
                    f"a worker process died (killed or out of memory) while the run was at {source.path}; "
                    "finished shards are kept: rerun the same command to finish the job"
                ) from None
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_shards(
    sources: list[Source],
    out_dir: str | os.PathLike,
    name: str,
    settings: ShardSettings,
    *,
    workers: int = 1,
    partition: int = 0,
    num_partitions: int = 1,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes: int = DEFAULT_MAX_BYTES,
    retry_failed: bool = False,
    progress: bool = True,
    corpus: dict | None = None,
    on_shard: Callable[[Path], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Write this partition's ``sources`` as shards ``out_dir/PREFIX-%06d.tar``, resuming a previous run.

    Args:
        workers: processes decoding and encoding in parallel (1: in this process).
        max_samples, max_bytes: a shard is closed at ``max_samples`` samples, or before a sample would
            take its file over ``max_bytes`` (a single larger sample gets a shard of its own).
        retry_failed: retry inputs an earlier run recorded as unreadable.
        corpus: what defines the inputs (recipe, input folder, split, ...), recorded with the settings
            so that a rerun on another corpus is refused.
        on_shard: called with the path of each shard after its manifest line is written.
        log: where messages go (default: stderr).
    Returns:
        the :class:`Summary` of this run.
    Raises:
        ValueError for other settings or a concurrent run; :class:`WorkerDied` when a worker dies.
    """
    log = log or _default_log
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = shard_prefix(name, partition, num_partitions)
    lock = RunLock(out / f".{prefix}.lock")
    try:
        check_run_settings(out / f"{prefix}.settings.json", settings, corpus)
        manifest = Manifest(out / f"{prefix}.manifest.jsonl", log)
        clean_leftovers(out, prefix, manifest, log)
        mine = partition_sources(sources, partition, num_partitions)
        shard_run = ShardRun(out, prefix, settings, manifest, max_samples, max_bytes, on_shard, log, started)
        return shard_run.run(mine, workers, retry_failed, progress)
    finally:
        lock.release()


class ShardRun:
    """One run of the writer over this partition's sources: fills shards in order and commits each.

    The state a closure would hold (the shard being filled, the finished inputs without clips waiting for a
    manifest line, the next shard number) lives here, so that each step is a method of its own."""

    def __init__(
        self,
        out: Path,
        prefix: str,
        settings: ShardSettings,
        manifest: Manifest,
        max_samples: int,
        max_bytes: int,
        on_shard: Callable[[Path], None] | None,
        log: Callable[[str], None],
        started: float,
    ):
        self.out, self.prefix, self.settings, self.manifest = out, prefix, settings, manifest
        self.max_samples, self.max_bytes, self.on_shard, self.log, self.started = (
            max_samples,
            max_bytes,
            on_shard,
            log,
            started,
        )
        pattern = re.compile(re.escape(prefix) + r"-(\d{6})\.tar$")
        numbers = [int(m.group(1)) for n in manifest.shard_names if (m := pattern.match(n))]
        self.next_index = 1 + max(numbers, default=-1)
        self.current: ShardFile | None = None
        self.empty_inputs: list[str] = []  # finished inputs without clips waiting for a manifest line
        self.summary = Summary()

    def new_shard(self) -> ShardFile:
        """The next shard file, skipping names that are taken by files this run's manifest did not write."""
        while (self.out / f"{self.prefix}-{self.next_index:06d}.tar").exists():  # not ours: never overwrite it
            self.log(
                f"leaving {self.out / f'{self.prefix}-{self.next_index:06d}.tar'} alone "
                "(not written by this run's manifest)"
            )
            self.next_index += 1
        shard = ShardFile(self.out / f"{self.prefix}-{self.next_index:06d}.tar")
        self.next_index += 1
        return shard

    def commit(self, open_rel: str | None = None, open_samples: int = 0) -> None:
        """Close the current shard, announce, rename and list it (with the input it leaves open, if any)."""
        current = self.current
        if current is None:
            return
        current.close()
        self.manifest.append({"writing": current.final.name})
        current.rename()
        entry = {
            "shard": current.final.name,
            "inputs": current.inputs + self.empty_inputs,
            "samples": current.samples,
            "bytes": current.nbytes,
        }
        if open_rel is not None:
            entry["open"] = {"rel": open_rel, "samples": open_samples}
        self.manifest.append(entry)
        self.summary.shards.append(current.final.name)
        self.empty_inputs = []
        self.current = None
        if self.on_shard is not None:
            self.on_shard(current.final)

    def pending(self, mine: list[Source], retry_failed: bool) -> list[Source]:
        """The sources still to do; counts those finished or failed earlier in the summary."""
        done, failed = self.manifest.done, self.manifest.failed
        self.summary.inputs, self.summary.already_done = len(mine), sum(s.rel in done for s in mine)
        pending = []
        for s in mine:
            if s.rel in done:
                continue
            if s.rel in failed and not retry_failed:
                self.summary.previously_failed.append((s.rel, failed[s.rel]))
                continue
            pending.append(s)
        return pending

    def add_result(self, result: SourceResult, skip: int) -> None:
        """Copy one decoded input's spooled clips into shards, after the ``skip`` an earlier run committed."""
        summary, settings = self.summary, self.settings
        if result.error is not None:
            self.log(f"skipping unreadable input: {result.error}")
            summary.failed.append((result.rel, result.error))
            self.manifest.append({"failed": result.rel, "reason": result.error})
            return
        summary.read += 1
        if not result.samples:
            why = "too short for one clip" if settings.clip_len else f"fewer than {MIN_CLIP_FRAMES} frames"
            summary.empty.append((result.rel, why))
            self.empty_inputs.append(result.rel)
            return
        written = skip
        try:
            for n, sample in enumerate(iter_spool(result.spool)):
                if n < skip:
                    continue
                size = sum(tar_bytes(len(v)) for k, v in sample.items() if k != "__key__")
                current = self.current
                if current is not None and current.samples and tar_file_bytes(current.nbytes + size) > self.max_bytes:
                    self.commit(result.rel if written else None, written)
                if self.current is None:
                    self.current = self.new_shard()
                self.current.add(sample)
                written += 1
                summary.clips += 1
                if self.current.samples >= self.max_samples and written < result.samples:
                    self.commit(result.rel, written)
        finally:
            Path(result.spool).unlink(missing_ok=True)
        if self.current is None:  # its last clip closed a shard (or an earlier run committed them all)
            self.empty_inputs.append(result.rel)
        else:
            self.current.inputs.append(result.rel)
            if self.current.samples >= self.max_samples:
                self.commit()

    def run(self, mine: list[Source], workers: int, retry_failed: bool, progress: bool) -> Summary:
        """Decode the pending sources (in ``workers`` processes) and write their clips; the summary."""
        pending = self.pending(mine, retry_failed)
        resume = self.manifest.open_inputs
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(pending), unit="input", desc=self.prefix, dynamic_ncols=True, file=sys.stderr)
        try:
            spool_of = lambda i: self.out / f".{self.prefix}.spool-{i:06d}.tar.tmp{os.getpid()}"
            for result in _results(pending, self.settings, spool_of, workers):
                self.add_result(result, resume.get(result.rel, 0))  # clips committed by an interrupted run
                if bar is not None:
                    elapsed = time.perf_counter() - self.started
                    rate = f"{self.summary.clips / max(elapsed, 1e-9):.1f}"
                    bar.set_postfix({"clips/s": rate, "failed": len(self.summary.failed)})
                    bar.update(1)
            self.commit()
            if self.empty_inputs:
                self.manifest.append({"shard": None, "inputs": self.empty_inputs, "samples": 0, "bytes": 0})
        except BaseException:
            if self.current is not None:
                self.current.abandon()
            for spool in self.out.glob(f".{self.prefix}.spool-*"):
                spool.unlink(missing_ok=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        self.summary.seconds = time.perf_counter() - self.started
        return self.summary
