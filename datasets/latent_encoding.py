"""Turning video shards into latent motion shards: the input stream and the output writer.

Resumability works per *input shard*: every input shard ``S.tar`` becomes one output shard
``latent-S.tar``, written under a temporary name, fsynced, renamed when complete, and then recorded in
the rank's manifest (``manifest-rank{r}.jsonl``, one JSON line per finished input shard with its
counts). A rerun skips the input shards that any manifest lists, so a killed run loses only the shards
it was writing and nothing is done twice. An input shard that cannot be read is reported and *not*
recorded, so a rerun tries it again; a torn last manifest line (a kill mid-append) is ignored and cut
off. Ranks (and data-loader workers) take disjoint input shards.

The input stream yields ready-made batches of sub-clips, each from one input shard, the shard's last
batch flagged ``last`` (an input shard with nothing usable still yields one empty, last batch), so
the writer knows when an output shard is complete even with several workers.

Audio: a video sample with sound (``KEY.wav`` or an mp4 audio stream) gives each sub-clip the audio of its
time span (frame ``idx[0]`` to the end of frame ``idx[-1]``), which :class:`~lvmm.stages.motion_encoding.
MotionEncoding` embeds with ImageBind's audio encoder into ``aud_emb.npy``. A corrupt audio member fails
its sample (counted), like a corrupt video.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import IterableDataset, get_worker_info

from lvmm.datasets.manifest import JsonlManifest
from lvmm.datasets.readers import choose_frames, decode, stable_seed
from lvmm.datasets.writer.encoding import npy_bytes
from lvmm.datasets.writer.tar_files import add_member
from lvmm.media import MediaError, commit_file

MANIFEST_GLOB = "manifest-rank*.jsonl"


def output_name(input_shard: str | os.PathLike) -> str:
    return f"latent-{Path(input_shard).stem}.tar"


def finished_inputs(out_dir: str | os.PathLike) -> set[str]:
    """Input shard names that some rank's manifest records as finished."""
    return {row["input"] for row in read_manifests(out_dir)}


def read_manifests(out_dir: str | os.PathLike) -> list[dict]:
    """The rows of every rank's manifest: one a finished input shard (a torn or garbled line is skipped, warned)."""
    rows = []
    for manifest in sorted(Path(out_dir).glob(MANIFEST_GLOB)):
        rows += [row for row in JsonlManifest(manifest).rows(warn=warnings.warn) if "input" in row]
    return rows


def iter_tar_samples(path: str, duplicates: list[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) of a webdataset tar, grouping members by key as webdataset does.

    A key seen before (or a member repeated within a sample) is a duplicate: with ``duplicates`` a
    list, the repeated sample is skipped and described there; otherwise ValueError names the shard
    and the key. Nothing is merged silently.
    """
    current, sample, seen, bad = None, {}, set(), False

    def duplicate(key):
        message = f"{path}: duplicate sample key {key!r} (the repeat is skipped)"
        if duplicates is None:
            raise ValueError(message)
        duplicates.append(message)

    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            key, _, ext = base.partition(".")
            key = os.path.join(os.path.dirname(member.name), key)
            if key != current:
                if sample and not bad:
                    yield current, sample
                sample, bad = {}, False
                if key in seen:
                    duplicate(key)
                    bad = True
                seen.add(key)
            current = key
            if ext in sample and not bad:
                duplicate(key)
                bad = True
            if not bad:
                sample[ext] = tar.extractfile(member).read()
    if sample and not bad:
        yield current, sample


MIN_AUDIO_SAMPLES = 400
"""Shortest sub-clip audio embedded (25 ms, one filter-bank frame at 16 kHz); shorter counts as none."""


def clip_audio(audio: np.ndarray | None, num_frames: int, first: int, last: int) -> np.ndarray | None:
    """The samples of frames ``first .. last`` of a ``num_frames``-frame video whose ``audio`` spans all its frames.

    The track is split evenly over the frames (it was cut to their span when the shard was written), so
    no frame rate is needed; None without audio or when the span is shorter than :data:`MIN_AUDIO_SAMPLES`.
    """
    if audio is None or num_frames < 1:
        return None
    per_frame = len(audio) / num_frames
    cut = audio[round(first * per_frame) : round((last + 1) * per_frame)]
    return np.ascontiguousarray(cut, dtype=np.float32) if len(cut) >= MIN_AUDIO_SAMPLES else None


class VideoClipBatches(IterableDataset):
    """Batches of (K + 1)-frame sub-clips cut from video shards, one input shard at a time.

    Args:
        shards: input shard paths (sorted; rank r of W takes ``shards[r::W]``, then worker splitting).
        num_frames: K + 1, frames per sub-clip.
        stride: frames between consecutive sub-clip starts.
        max_segments: most sub-clips per video sample (None: all); with ``random_sorted``, the number of
            independent draws per video (None: 1).
        batch_size: sub-clips per batch.
        sampling: ``"consecutive"``: windows of ``num_frames`` every ``stride`` frames (pre-training);
            ``"random_sorted"``: frame 0 and ``num_frames - 1`` others at random, sorted in time, per draw
            (LFDM's benchmark clips), each draw seeded by the video's key and the draw's number.
        skip: input shard names to skip (already finished).
        rank, world_size: this process's place; read from torch.distributed when None.
    """

    def __init__(
        self,
        shards: list[str],
        num_frames: int = 9,
        stride: int = 4,
        max_segments: int | None = None,
        batch_size: int = 8,
        skip: set[str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        sampling: str = "consecutive",
    ):
        if sampling not in ("consecutive", "random_sorted"):
            raise ValueError(f"unknown sampling {sampling!r} (use 'consecutive' or 'random_sorted')")
        self.sampling = sampling
        self.shards = sorted(str(s) for s in shards)
        self.num_frames, self.stride, self.max_segments, self.batch_size = num_frames, stride, max_segments, batch_size
        self.skip = set(skip or ())
        self.rank, self.world_size = rank, world_size

    def assigned(self) -> list[str]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        mine = self.shards[rank::world]
        info = get_worker_info()
        if info is not None:
            mine = mine[info.id :: info.num_workers]
        return [s for s in mine if Path(s).name not in self.skip]

    def _empty(self, shard: str, failed: list, videos: int, last: bool, unreadable: str | None = None) -> dict:
        return {
            "source": shard,
            "last": last,
            "frames": torch.zeros(0),
            "keys": [],
            "meta": [],
            "failed": failed,
            "videos": videos,
            "unreadable": unreadable,
        }

    def __iter__(self):
        for shard in self.assigned():
            pending, failed, videos = [], [], 0
            try:
                samples = list(iter_tar_samples(shard, duplicates=failed))
            except (tarfile.TarError, OSError, EOFError) as e:
                # not recorded as finished: the writer leaves it out of the manifest and a rerun retries it
                why = f"{shard}: unreadable shard ({type(e).__name__}: {e})"
                yield self._empty(shard, [why], 0, last=True, unreadable=why)
                continue
            for key, raw in samples:
                try:
                    sample = decode(dict(raw, __key__=key))  # a corrupt json raises ValueError too
                    frames = sample.frames(None)
                    audio = sample.audio()
                except (MediaError, ValueError) as e:
                    failed.append(f"{shard}:{key}: {e}")
                    continue
                videos += 1
                caption, meta = sample.caption, sample.meta
                for name, idx in self._clips(key, len(frames)):
                    clip_meta = {
                        "source_key": key,
                        "source_shard": Path(shard).name,
                        "frame_indices": idx,
                        "caption": caption,
                        "label": sample.label,
                        "family": meta.get("class_name", ""),
                        "subject": meta.get("subject"),
                        "sampling": self.sampling,
                    }
                    clip_meta["audio"] = clip_audio(audio, len(frames), idx[0], idx[-1])
                    pending.append((name, frames[idx], clip_meta))
                    if len(pending) == self.batch_size:
                        yield self._batch(shard, pending, failed, videos, last=False)
                        pending, failed, videos = [], [], 0
            yield (
                self._batch(shard, pending, failed, videos, last=True)
                if pending
                else self._empty(shard, failed, videos, last=True)
            )

    def _clips(self, key: str, t: int) -> list[tuple[str, list[int]]]:
        """(output key, frame indices) of the sub-clips of a ``t``-frame video."""
        if self.sampling == "random_sorted":
            if t < self.num_frames:
                return []  # too short for N distinct frames: no clip, as with windows
            import random

            draws = self.max_segments or 1
            return [
                (
                    f"{key}_r{d:03d}",
                    choose_frames(t, self.num_frames, "random_sorted", random.Random(stable_seed(key, d)), True),
                )
                for d in range(draws)
            ]
        starts = list(range(0, t - self.num_frames + 1, self.stride))[: self.max_segments]
        return [(f"{key}_s{s:05d}", list(range(s, s + self.num_frames))) for s in starts]

    def _batch(self, shard, items, failed, videos, last) -> dict:
        frames = (
            torch.from_numpy(np.stack([f for _, f, _ in items])).permute(0, 1, 4, 2, 3).float().div_(255)
        )  # (B, T, 3, H, W)
        return {
            "source": shard,
            "last": last,
            "frames": frames,
            "keys": [k for k, _, _ in items],
            "meta": [m for _, _, m in items],
            "failed": failed,
            "videos": videos,
            "unreadable": None,
        }


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class LatentShardWriter(BasePredictionWriter):
    """Writes the records of :class:`~lvmm.stages.motion_encoding.MotionEncoding` as latent motion shards.

    Each record becomes a sample with ``motion.npy`` (float16, (K+1, 4, h, w)), ``img_emb.npy``,
    ``txt_emb.npy`` (when there is a caption), ``aud_emb.npy`` (when the clip has audio), ``first.png`` and
    ``json`` (docs/data-formats.md, Latent motion shards). Clips whose reconstruction error is above the
    threshold were already dropped by the module and are counted here.
    """

    def __init__(self, out_dir: str | os.PathLike):
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.open: dict[str, tuple[tarfile.TarFile, Path, dict]] = {}
        self.unreadable: list[str] = []  # input shards of this run that could not be read (retried by a rerun)

    @property
    def manifest(self) -> Path:
        return self.out_dir / f"manifest-rank{self.rank}.jsonl"

    def setup(self, trainer, pl_module, stage=None):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rank = trainer.global_rank
        for stale in self.out_dir.glob(f".*.tmp-rank{self.rank}"):
            stale.unlink()  # left by a killed run; its input shard is not in any manifest
        JsonlManifest(self.manifest).repair()  # a torn last line: the next row starts on a line of its own

    def on_exception(self, trainer, pl_module, exception):
        """Remove the temporaries of the output shards this rank was writing."""
        for tar, _, _ in self.open.values():
            try:
                tar.close()
            finally:
                Path(tar.name).unlink(missing_ok=True)
        self.open.clear()

    def _writer(self, source: str):
        if source not in self.open:
            final = self.out_dir / output_name(source)
            tmp = self.out_dir / f".{final.name}.tmp-rank{self.rank}"
            self.open[source] = (
                tarfile.open(tmp, "w"),
                final,
                {"read": 0, "kept": 0, "dropped": 0, "failed": 0, "videos": 0, "errors": []},
            )
        return self.open[source]

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if batch.get("unreadable"):
            warnings.warn(f"{batch['unreadable']}; not recorded as finished, a rerun tries it again", stacklevel=2)
            self.unreadable.append(batch["unreadable"])
            return
        tar, final, counts = self._writer(batch["source"])
        counts["failed"] += len(batch["failed"])
        counts["errors"] += batch["failed"]
        counts["videos"] += batch["videos"]
        counts["read"] += len(batch["keys"])
        for rec in prediction["kept"]:
            key = rec["key"]
            add_member(tar, f"{key}.motion.npy", npy_bytes(rec["motion"].astype(np.float16)))
            add_member(tar, f"{key}.img_emb.npy", npy_bytes(rec["img_emb"].astype(np.float32)))
            if rec.get("txt_emb") is not None:
                add_member(tar, f"{key}.txt_emb.npy", npy_bytes(rec["txt_emb"].astype(np.float32)))
            if rec.get("aud_emb") is not None:
                add_member(tar, f"{key}.aud_emb.npy", npy_bytes(rec["aud_emb"].astype(np.float32)))
            add_member(tar, f"{key}.first.png", _png_bytes(rec["first"]))
            add_member(tar, f"{key}.json", json.dumps(rec["json"], sort_keys=True).encode())
        counts["kept"] += len(prediction["kept"])
        counts["dropped"] += prediction["dropped"]
        if batch["last"]:
            self._finish(batch["source"])

    def _finish(self, source: str) -> None:
        tar, final, counts = self.open.pop(source)
        tar.close()
        commit_file(Path(tar.name), final)
        JsonlManifest(self.manifest).append(
            {"input": Path(source).name, "output": final.name, "rank": self.rank, **counts}
        )
