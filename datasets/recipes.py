"""Dataset recipes: small objects that list the inputs of a corpus with their labels.

A recipe knows a dataset's folder layout and naming and nothing about decoding or shard writing:
:meth:`Recipe.sources` returns :class:`Source` records (a path, a stable relative id, labels, an
optional background crop) and :mod:`lvmm.datasets.writer` runs one generic pipeline over them.

Layouts (the names the public releases and LFDM's preprocessing use):

* ``folder``: any tree of videos (mp4, avi, webm, mov, mkv, gif) and frame folders (a folder holding
  images). A caption comes from a sidecar ``NAME.txt`` beside ``NAME.mp4`` (or beside the frame
  folder ``NAME/``), or from a CSV with WebVid's columns matched on the file stem.
* ``webvid``: a WebVid CSV (``videoid, name, page_dir, contentUrl, duration``; ``name`` is the
  caption) and videos at ``ROOT/page_dir/videoid.mp4`` or ``ROOT/videoid.mp4``.
* ``mug``: ``ROOT/<subject>/<expression>/<take>/img_*.jpg`` (subjects 002, 003 and 049 have an extra
  ``session<k>/`` level), 19 fps.
* ``mhad`` (UTD-MHAD): ``ROOT/**/a<action>_s<subject>_t<trial>_color.avi`` (640x480 RGB, cropped to
  the person's column here) or LFDM's already-cropped frame folders ``ROOT/**/a<a>_s<s>_t<t>/``.
* ``natops``: LFDM's segmented frame folders ``ROOT/**/g<gesture>s<subject>p<repetition>/`` or the
  unsegmented recordings ``ROOT/**/g<gesture>s<subject>.avi`` (320x240, 20 fps), background-cropped.
* ``celebvhq``: ``ROOT/celebvhq_info.json`` and the processed clips ``ROOT/**/<clip_id>.mp4``.
* ``procedural``: the built-in clips of :mod:`lvmm.datasets.procedural` (no files).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lvmm.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES

PROCEDURAL_SCHEME = "procedural:"
"""Paths of procedural sources start with this; the rest is ``split:seed:index``."""

DEFAULT_FRAME_FOLDER_FPS = 25.0
"""Frame rate assumed for a frame folder whose recipe does not know better (override with --source-fps)."""

SPLITS = ("train", "test", "all")

MAX_CAPTION_BYTES = 64 * 1024
"""Longest caption accepted (sidecar file or CSV field): captions are sentences; a longer one is a wrong file."""


@dataclass(frozen=True)
class Source:
    """One input of a corpus.

    Attributes:
        path: the file or frame folder on disk, or ``procedural:split:seed:index``.
        rel: a stable id (the path relative to the recipe's root): keys, the manifest and the
            ``--shard-index`` partition are derived from it, so it must not depend on the machine.
        kind: ``"video"``, ``"frames"`` or ``"procedural"``.
        labels: what the recipe knows: ``caption``, ``subject``, ``class`` (int), ``class_name``,
            ``split`` and anything else JSON can hold; stored in the sample's json.
        crop: a background crop ``(top, bottom, left, right)`` as fractions of the frame, applied
            before resizing; fractions so that the crop holds at any source resolution.
        fps: the frame rate of a frame folder (videos carry their own).
        error: why this input cannot be used although it was found (e.g. a bad caption file); the
            writer records it as failed with this reason, without decoding it.
    """

    path: str
    rel: str
    kind: str
    labels: dict = field(default_factory=dict)
    crop: tuple[float, float, float, float] | None = None
    fps: float | None = None
    error: str | None = None


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The images of a frame folder in name order (frame order by the datasets' zero-padded names)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and _is_image(p.name))


def walk_inputs(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """Every video file and frame folder under ``root`` as ``(path, kind)``, sorted by path.

    A folder that holds images directly is a frame folder and is not searched further; hidden
    files and folders (``.name``) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder not found")
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        names = [f for f in filenames if not f.startswith(".")]
        if any(_is_image(f) for f in names) and Path(dirpath) != root:
            found.append((Path(dirpath), "frames"))
            dirnames[:] = []  # a frame folder's subfolders are not inputs of their own
            continue
        found.extend((Path(dirpath) / f, "video") for f in names if _is_video(f))
    return sorted(found)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def read_caption(path: str | os.PathLike) -> str:
    """A caption sidecar file as text; raises ValueError naming the file when it is too long or not UTF-8."""
    size = os.path.getsize(path)
    if size > MAX_CAPTION_BYTES:
        raise ValueError(f"{path}: caption file of {size:,} bytes is longer than the limit of {MAX_CAPTION_BYTES:,}")
    try:
        return Path(path).read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: caption is not UTF-8 text ({e})") from None


def read_webvid_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a WebVid-style CSV; checks for the columns the recipes use (videoid, name).

    Raises ValueError naming the file (and line) for a missing column, a non-UTF-8 file or bad CSV.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"videoid", "name"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(
                    f"{path}: not a WebVid-style CSV, missing column(s) {sorted(missing)} "
                    "(expected videoid, name, page_dir, contentUrl, duration)"
                )
            rows = list(reader)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    except csv.Error as e:
        raise ValueError(f"{path}: bad CSV ({e})") from None
    bad = [
        i
        for i, row in enumerate(rows)
        if not isinstance(row.get("videoid"), str) or not isinstance(row.get("name"), str)
    ]
    if bad:
        raise ValueError(f"{path}: line {bad[0] + 2}: a row without videoid or name")
    return rows


def _caption_error(caption: str | None, where: str) -> str | None:
    if caption is not None and len(caption.encode("utf-8")) > MAX_CAPTION_BYTES:
        return f"{where}: caption longer than the limit of {MAX_CAPTION_BYTES:,} bytes"
    return None


class Recipe:
    """A corpus: its inputs with their labels, and the spatial fit its protocol uses.

    Subclasses set ``name`` and implement :meth:`sources`. ``fit`` is ``"crop"`` (fill the target
    size and centre-crop the excess) or ``"pad"`` (fit inside and pad with black, as LFDM does for
    the non-square MHAD and NATOPS frames); ``size`` and ``clip_len`` are the protocol's defaults
    (``clip_len`` None: one sample per whole video, for readers that sample frames from it).
    """

    name = "recipe"
    fit = "crop"
    size: tuple[int, int] | None = None
    clip_len: int | None = None

    def sources(self) -> list[Source]:
        raise NotImplementedError


class FolderRecipe(Recipe):
    """Videos and frame folders under ``root``; captions from sidecar ``.txt`` files or a WebVid CSV."""

    name = "folder"
    clip_len = 16

    def __init__(self, root: str, captions_csv: str | None = None, source_fps: float | None = None):
        self.root = Path(root)
        self.source_fps = source_fps or DEFAULT_FRAME_FOLDER_FPS
        self.csv_captions = {}
        if captions_csv:
            self.csv_captions = {row["videoid"]: row["name"] for row in read_webvid_csv(captions_csv)}

    def _caption(self, path: Path) -> str | None:
        sidecar = path.with_name(path.stem + ".txt") if path.is_file() else path.with_name(path.name + ".txt")
        if sidecar.is_file():
            return read_caption(sidecar)
        return self.csv_captions.get(path.stem if path.is_file() else path.name)

    def sources(self) -> list[Source]:
        out = []
        for path, kind in walk_inputs(self.root):
            error = None
            try:
                caption = self._caption(path)
            except (ValueError, OSError) as e:  # this input is skipped and named, the run goes on
                caption, error = None, str(e)
            error = error or _caption_error(caption, str(path))
            labels = {"caption": caption} if caption and not error else {}
            out.append(
                Source(
                    str(path),
                    _rel(path, self.root),
                    kind,
                    labels,
                    fps=self.source_fps if kind == "frames" else None,
                    error=error,
                )
            )
        return out


class WebVidRecipe(Recipe):
    """The rows of a WebVid-style CSV whose videos lie at ``root/page_dir/videoid.mp4`` or ``root/videoid.mp4``.

    A row without a file on disk still becomes a source, so that the run reports it as missing
    instead of dropping it silently.
    """

    name = "webvid"
    clip_len = 16

    def __init__(self, root: str, csv_path: str):
        if not csv_path:
            raise ValueError("the webvid recipe needs --csv (a CSV with videoid, name, page_dir columns)")
        self.root, self.csv_path = Path(root), csv_path

    def _find(self, row: dict) -> Path:
        vid = row["videoid"].strip()
        candidates = [self.root / row.get("page_dir", "").strip() / f"{vid}{ext}" for ext in VIDEO_SUFFIXES]
        candidates += [self.root / f"{vid}{ext}" for ext in VIDEO_SUFFIXES]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def sources(self) -> list[Source]:
        out = []
        for row in read_webvid_csv(self.csv_path):
            path = self._find(row)
            labels = {"caption": row["name"].strip(), "videoid": row["videoid"].strip()}
            if row.get("duration"):
                labels["duration"] = row["duration"]
            rel = path.relative_to(self.root).as_posix()
            out.append(
                Source(
                    str(path), rel, "video", labels, error=_caption_error(labels["caption"], f"{self.csv_path} ({rel})")
                )
            )
        return sorted(out, key=lambda s: s.rel)


class SubjectSplitRecipe(Recipe):
    """Base of the benchmark recipes: subject-disjoint train/test splits, 128x128, whole videos.

    ``split`` keeps ``"train"`` or ``"test"`` subjects, or ``"all"`` of them (subjects in neither
    list are then labelled ``split: null``).
    """

    size = (128, 128)
    clip_len = None
    train_subjects: tuple = ()
    test_subjects: tuple = ()
    classes: tuple[str, ...] = ()

    def __init__(self, root: str, split: str = "all"):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} (use one of {SPLITS})")
        self.root, self.split = Path(root), split

    def subject_split(self, subject) -> str | None:
        if subject in self.train_subjects:
            return "train"
        if subject in self.test_subjects:
            return "test"
        return None

    def keep(self, subject) -> bool:
        return self.split == "all" or self.subject_split(subject) == self.split

    def labels(self, subject, class_index: int, caption: str) -> dict:
        return {
            "subject": subject,
            "class": class_index,
            "class_name": self.classes[class_index],
            "caption": caption,
            "split": self.subject_split(subject),
        }


class MUGRecipe(SubjectSplitRecipe):
    """MUG facial expressions: frame folders ``<subject>/[session<k>/]<expression>/<take>/``.

    The split is LFDM's (26 training and 26 test subjects, drawn with seed 1234 from the 52
    subjects that have all expressions); subjects are the three-digit folder names.
    """

    name = "mug"
    fps = 19.0  # MUG's capture rate
    classes = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    train_subjects = (
        "008",
        "017",
        "021",
        "028",
        "030",
        "031",
        "034",
        "036",
        "037",
        "038",
        "039",
        "042",
        "043",
        "044",
        "045",
        "055",
        "060",
        "061",
        "062",
        "063",
        "071",
        "075",
        "076",
        "077",
        "083",
        "084",
    )
    test_subjects = (
        "001",
        "002",
        "006",
        "007",
        "010",
        "013",
        "014",
        "020",
        "027",
        "032",
        "033",
        "040",
        "046",
        "048",
        "049",
        "052",
        "064",
        "065",
        "066",
        "070",
        "072",
        "073",
        "074",
        "078",
        "079",
        "082",
    )

    def sources(self) -> list[Source]:
        out = []
        for path, kind in walk_inputs(self.root):
            parts = path.relative_to(self.root).parts
            if kind != "frames" or len(parts) < 3:
                continue
            subject, expression = parts[0], parts[-2]
            if expression not in self.classes or not self.keep(subject):
                continue
            c = self.classes.index(expression)
            out.append(
                Source(
                    str(path),
                    _rel(path, self.root),
                    "frames",
                    self.labels(subject, c, f"a face showing {expression}"),
                    fps=self.fps,
                )
            )
        return out


class MHADRecipe(SubjectSplitRecipe):
    """UTD-MHAD actions: ``a<action>_s<subject>_t<trial>_color.avi`` or cropped frame folders ``a<a>_s<s>_t<t>``.

    Split: LFDM's subjects 1, 2, 3, 5 for training and 4, 6, 7, 8 for testing (two men and two
    women each). The raw 640x480 videos are cropped to the column LFDM found from the depth maps
    (x 156-492 of 640, all rows); the frame folders of LFDM's preprocessing are already cropped.
    """

    name = "mhad"
    fit = "pad"
    fps = 30.0
    # LFDM's box from the depth maps, in pixels of the 640x480 RGB frame: x 156..492, y 0..480.
    background_crop = (0.0, 1.0, 156 / 640, 492 / 640)
    classes = (
        "right arm swipe to the left",
        "right arm swipe to the right",
        "right hand wave",
        "two hand front clap",
        "right arm throw",
        "cross arms in the chest",
        "basketball shooting",
        "draw x",
        "draw circle clockwise",
        "draw circle counter clockwise",
        "draw triangle",
        "right hand bowling",
        "front boxing",
        "baseball swing from right",
        "tennis forehand swing",
        "two arms curl",
        "tennis serve",
        "two hand push",
        "knock on door",
        "hand catch",
        "pick up and throw",
        "jogging",
        "walking",
        "sit to stand",
        "stand to sit",
        "forward lunge (left foot forward)",
        "squat",
    )
    train_subjects = (1, 2, 3, 5)
    test_subjects = (4, 6, 7, 8)
    pattern = re.compile(r"^a(\d+)_s(\d+)_t(\d+)(_color)?$")

    def sources(self) -> list[Source]:
        out = []
        for path, kind in walk_inputs(self.root):
            stem = path.name if kind == "frames" else path.stem
            m = self.pattern.match(stem)
            if not m or (kind == "video" and not m.group(4)):
                continue
            action, subject, trial = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if not 1 <= action <= len(self.classes) or not self.keep(subject):
                continue
            labels = self.labels(subject, action - 1, self.classes[action - 1]) | {"trial": trial}
            crop = self.background_crop if kind == "video" else None
            out.append(Source(str(path), _rel(path, self.root), kind, labels, crop=crop, fps=self.fps))
        return out


class NATOPSRecipe(SubjectSplitRecipe):
    """NATOPS aircraft-handling gestures: frame folders ``g<gg>s<ss>p<pp>`` or recordings ``g<gg>s<ss>.avi``.

    Split: LFDM's seed-3407 draw of 10 training subjects (3, 4, 8, 9, 12, 13, 15, 17, 19, 20); the
    other 10 are the test subjects (LFDM's evaluation code leaves out subject 1 of them). Frames are
    cropped to LFDM's box (y 10-239, x 30-290 of the 320x240 frame) before resizing.
    """

    name = "natops"
    fit = "pad"
    fps = 20.0
    background_crop = (10 / 240, 239 / 240, 30 / 320, 290 / 320)
    classes = (
        "I Have Command",
        "All Clear",
        "Not Clear",
        "Spread Wings",
        "Fold Wings",
        "Lock Wings",
        "Up Hook",
        "Down Hook",
        "Remove Tiedowns",
        "Remove Chocks",
        "Insert Chocks",
        "Move Ahead",
        "Turn Left",
        "Turn Right",
        "Next Marshaller",
        "Slow Down",
        "Stop",
        "Nosegear Steering",
        "Hot Brakes",
        "Brakes On",
        "Brakes Off",
        "Install Tiedowns",
        "Fire",
        "Cut Engine",
    )
    train_subjects = (3, 4, 8, 9, 12, 13, 15, 17, 19, 20)
    test_subjects = (1, 2, 5, 6, 7, 10, 11, 14, 16, 18)
    pattern = re.compile(r"^g(\d\d)s(\d\d)(?:p(\d\d))?$")

    def sources(self) -> list[Source]:
        out = []
        for path, kind in walk_inputs(self.root):
            m = self.pattern.match(path.name if kind == "frames" else path.stem)
            if not m:
                continue
            gesture, subject = int(m.group(1)), int(m.group(2))
            if not 1 <= gesture <= len(self.classes) or not self.keep(subject):
                continue
            labels = self.labels(subject, gesture - 1, self.classes[gesture - 1].lower())
            if m.group(3):
                labels["repetition"] = int(m.group(3))
            out.append(Source(str(path), _rel(path, self.root), kind, labels, crop=self.background_crop, fps=self.fps))
        return out


class CelebVHQRecipe(Recipe):
    """CelebV-HQ: ``ROOT/celebvhq_info.json`` and its processed clips ``<clip_id>.mp4`` anywhere under ROOT.

    The caption is made from the clip's action and emotion attributes (the dataset has no free
    text); the attributes themselves are kept in the json. Clips listed in the json without a file
    become sources too, and are reported as missing.
    """

    name = "celebvhq"
    clip_len = 16

    def __init__(self, root: str, info: str | None = None):
        self.root = Path(root)
        self.info = Path(info) if info else self.root / "celebvhq_info.json"

    @staticmethod
    def _emotion(emotion) -> str | None:
        labels = emotion.get("labels") if isinstance(emotion, dict) else emotion
        if isinstance(labels, str):
            return labels
        if isinstance(labels, list) and labels:  # a sequence of segments: take the first one's emotion
            first = labels[0]
            return first.get("emotion") if isinstance(first, dict) else str(first)
        return None

    def _labels(self, clip: dict, action_names: list, appearance_names: list) -> dict:
        attrs = clip.get("attributes", {})
        actions = [n for n, on in zip(action_names, attrs.get("action", [])) if on]
        appearance = [n for n, on in zip(appearance_names, attrs.get("appearance", [])) if on]
        emotion = self._emotion(attrs.get("emotion"))
        words = [a.replace("_", " ") for a in actions] + ([f"looks {emotion}"] if emotion else [])
        caption = "a person " + ", ".join(words) if words else "a person's face"
        return {
            "caption": caption,
            "actions": actions,
            "appearance": appearance,
            "emotion": emotion,
            "youtube_id": clip.get("ytb_id"),
        }

    def sources(self) -> list[Source]:
        if not self.info.is_file():
            raise FileNotFoundError(f"{self.info}: CelebV-HQ annotation file not found")
        try:
            info = json.loads(self.info.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"{self.info}: not a CelebV-HQ annotation file (bad JSON or not UTF-8: {e})") from None
        if not isinstance(info, dict) or not isinstance(info.get("clips"), dict):
            raise ValueError(f"{self.info}: not a CelebV-HQ annotation file (no 'clips' object)")
        meta = info.get("meta_info", {}) if isinstance(info.get("meta_info"), dict) else {}
        action_names = meta.get("action_mapping", [])
        appearance_names = meta.get("appearance_mapping", [])
        files = {p.stem: p for p, kind in walk_inputs(self.root) if kind == "video"}
        out = []
        for clip_id, clip in sorted(info["clips"].items()):
            path = files.get(clip_id, self.root / f"{clip_id}.mp4")
            try:
                labels = self._labels(clip, action_names, appearance_names)
                error = _caption_error(labels["caption"], f"{self.info} ({clip_id})")
            except (AttributeError, TypeError, ValueError) as e:  # one malformed entry: skip and name it
                labels, error = {}, f"{self.info}: clip {clip_id!r}: malformed annotation ({type(e).__name__}: {e})"
            out.append(Source(str(path), _rel(path, self.root), "video", labels, error=error))
        return out


class ProceduralRecipe(Recipe):
    """The built-in procedural clips (docs/design.md, The built-in data): ``num_clips`` clips of corpus ``seed``.

    Frames are rendered directly at the target size with their ground-truth fields, so the writer
    stores them without resizing (the size must be a multiple of 32).
    """

    name = "procedural"
    clip_len = 9

    def __init__(self, num_clips: int = 64, seed: int = 0, split: str = "train", fps: float | None = None):
        from .procedural import DEFAULT_FPS, FAMILIES

        self.num_clips, self.seed, self.split = num_clips, seed, "val" if split == "test" else split
        self.fps = fps or DEFAULT_FPS
        self.families = FAMILIES

    def sources(self) -> list[Source]:
        return [
            Source(
                f"{PROCEDURAL_SCHEME}{self.split}:{self.seed}:{i}",
                f"procedural/{self.split}/{self.seed}/{i:08d}",
                "procedural",
                {"split": self.split},
                fps=self.fps,
            )
            for i in range(self.num_clips)
        ]


RECIPES = {
    r.name: r
    for r in (FolderRecipe, WebVidRecipe, MUGRecipe, MHADRecipe, NATOPSRecipe, CelebVHQRecipe, ProceduralRecipe)
}
"""Recipe classes by name (the ``--recipe`` choices of tools/make_shards.py)."""


def make_recipe(
    name: str,
    root: str | None = None,
    *,
    split: str = "all",
    csv_path: str | None = None,
    source_fps: float | None = None,
    num_clips: int = 64,
    seed: int = 0,
    fps: float | None = None,
    info: str | None = None,
) -> Recipe:
    """Build recipe ``name`` from the options of the command line (options a recipe does not use are ignored)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r} (choose from {sorted(RECIPES)})")
    if name == "procedural":
        return ProceduralRecipe(num_clips=num_clips, seed=seed, split="train" if split == "all" else split, fps=fps)
    if not root:
        raise ValueError(f"the {name} recipe needs an input folder")
    if name == "folder":
        return FolderRecipe(root, captions_csv=csv_path, source_fps=source_fps)
    if name == "webvid":
        return WebVidRecipe(root, csv_path)
    if name == "celebvhq":
        return CelebVHQRecipe(root, info=info)
    return RECIPES[name](root, split=split)
