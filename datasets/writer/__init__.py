"""Video shard writing: one generic pipeline from recipe sources to webdataset shards.

The modules, in the order a sample passes through them: :mod:`.settings` (settings, keys, partitions),
:mod:`.decoding` (PyAV and frame folders, resampling, geometry, clips), :mod:`.encoding` (samples, spools),
:mod:`.tar_files` (members, shard files), :mod:`.manifest` (what a rerun resumes from) and :mod:`.run`
(:func:`write_shards`).

Each :class:`~lvmm.datasets.recipes.Source` is decoded (streaming, so a long video never sits in
memory at its source size), resampled in time, cropped and resized, cut into clips, and each clip is
encoded as a sample (docs/data-formats.md, Video shards)::

    <key>.mp4 | <key>.frames.npy   the clip: H.264, or uint8 (T, H, W, 3)
    <key>.flow.npy                 float16 (T, 2, H, W) ground-truth fields (procedural data only)
    <key>.json                     source, fps, frame_indices, width, height, labels of the recipe
    <key>.txt                      the caption, where there is one

Keys are ``<sha1(rel)[:16]>_f<start:06d>``: the source's relative id and the index of the clip's
first frame on the output time line (the source frame index when the frame rate is kept; up-sampling
repeats source frames, so their index would repeat), so a key is unique and never changes between
runs or machines.

Robustness, in the order a run does things:

* Partitioning: ``partition``/``num_partitions`` keep the sources whose sha1 of ``rel`` falls in
  this partition, so machines sharing one source list cover it exactly once; each partition has
  its own shard names (``NAME-<i>of<N>-%06d.tar``) and manifest, so they can share a folder.
* Streaming: an input's clips are encoded one at a time into a spool file (in a worker process when
  ``workers > 1``), and copied into shards only when the whole input decoded without error, so
  memory holds one clip and a shard never holds part of a bad input. A shard is closed before the
  next sample would take its file over ``max_bytes`` (or at ``max_samples``), within one input too.
* Resuming: ``NAME[...].manifest.jsonl`` lists, for every finished shard, the inputs it completes
  and the input it leaves open (``"open": {"rel", "samples"}``: how many of its clips are in shards
  so far); a shard is written under a hidden temporary name, announced (``{"writing": name}``),
  renamed when complete, then its line is appended and fsynced. A rerun skips the inputs listed,
  continues an open input after its committed clips, numbers new shards after the listed ones, and
  deletes its own leftovers: temporary and spool files, and announced shards a kill left unlisted.
  Files it did not write are never deleted (a shard name that is taken is skipped).
* Exclusion and consistency: one run at a time per ``out/NAME`` (an ``flock`` on a hidden lock file,
  released by the kernel if the run dies), and ``NAME.settings.json`` records the clip settings and
  the corpus (recipe, input folder, split, source fps, ...), so a rerun with other settings or
  another corpus is refused instead of mixed in.
* Honesty: an input that cannot be read (including a video that decodes fewer frames than its
  container declares, and a bad caption file) is reported with its path and reason, recorded in the
  manifest (so a rerun does not retry it unless asked) and counted in the :class:`Summary`. A dead
  worker process ends the run with an error; a rerun finishes the job.
* Determinism: the same inputs and settings give byte-identical npy shards, also across a kill and
  a rerun. mp4 shards have the same keys, json and captions, but their H.264 bytes are not
  guaranteed: encoding on one thread (:func:`lvmm.media.encode_mp4`) made them identical on a quiet
  machine, yet runs on a heavily loaded one still differed; their decoded frames agree within
  ``MP4_RERUN_TOLERANCE`` (mean absolute difference, 0-255).
"""

from .decoding import Geometry, iter_clips, resample_indices
from .encoding import encode_sample, iter_source_samples, npy_bytes, process_source
from .manifest import Manifest, RunLock
from .run import ShardRun, write_shards
from .settings import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    FITS,
    FORMATS,
    KEY_HASH_CHARS,
    MIN_CLIP_FRAMES,
    MP4_RERUN_TOLERANCE,
    TAR_MTIME,
    ShardSettings,
    SourceResult,
    Summary,
    WorkerDied,
    in_partition,
    partition_sources,
    sample_key,
    shard_prefix,
    source_hash,
)
from .tar_files import ShardFile, add_member, add_sample, iter_spool, tar_bytes, tar_file_bytes

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SAMPLES",
    "FITS",
    "FORMATS",
    "KEY_HASH_CHARS",
    "MIN_CLIP_FRAMES",
    "MP4_RERUN_TOLERANCE",
    "TAR_MTIME",
    "Geometry",
    "Manifest",
    "RunLock",
    "ShardFile",
    "ShardRun",
    "ShardSettings",
    "SourceResult",
    "Summary",
    "WorkerDied",
    "add_member",
    "add_sample",
    "encode_sample",
    "in_partition",
    "iter_clips",
    "iter_source_samples",
    "iter_spool",
    "npy_bytes",
    "partition_sources",
    "process_source",
    "resample_indices",
    "sample_key",
    "shard_prefix",
    "source_hash",
    "tar_bytes",
    "tar_file_bytes",
    "write_shards",
]
