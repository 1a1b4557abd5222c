"""A web page for animating photos with a trained LVMM (Gradio).

    python tools/app.py --model models/lvmm                  # a model package (tools/export.py)
    python tools/app.py --ckpt STAGE2.ckpt [--stage1-ckpt STAGE1.ckpt]
    python tools/app.py --model models/lvmm --host 0.0.0.0 --port 8080   # serve beyond this machine

Upload a photo; optionally a text prompt or an audio file; choose a stochastic clip or a seamless loop,
the motion strength, a region brush (paint what may move), drag arrows (click a start and an end point
on the second copy of the photo), seeds, steps, sampler, duration and fps. The page shows the clip (mp4)
beside a flow-colour preview of its motion and offers the mp4, a gif and the fields (.npy) to download.
It binds to 127.0.0.1 unless --host says otherwise. A bad upload gets a message in the page; the
server keeps serving.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

MODES = ("stochastic", "seamless loop")
MAX_DRAGS = 8


def mask_from_editor(value, size: tuple[int, int]):
    """The painted region of an ImageEditor value as an (H, W) float mask at the photo's size, or None."""
    import numpy as np
    from PIL import Image

    if not isinstance(value, dict):
        return None
    layers = [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    painted = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[-1] == 4]
    if not painted or not any(p.any() for p in painted):
        return None
    mask = np.logical_or.reduce(painted).astype(np.uint8) * 255
    h, w = size
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
    return (mask > 127).astype(np.float32)


def draw_arrows(image, drags, pending=None):
    """The photo with the drag arrows drawn on it (and a pending start point)."""
    import numpy as np
    from PIL import Image, ImageDraw

    im = Image.fromarray(image).convert("RGB")
    d = ImageDraw.Draw(im)
    r = max(2, min(im.size) // 40)
    for (x0, y0), (x1, y1) in drags:
        d.line([(x0, y0), (x1, y1)], fill=(255, 60, 60), width=max(1, r // 2))
        d.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=(255, 60, 60))
    if pending is not None:
        x, y = pending
        d.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 0), width=max(1, r // 2))
    return np.asarray(im)


def frame_plan(duration: float, fps: float, loop: bool, max_frames: int) -> int:
    """Generated frames K for a clip of ``duration`` seconds at ``fps``: a clip plays I_0 and frames 1..K,
    a loop plays frames 1..K-1 (frame K is pulled to frame 1, so playing it would repeat a frame)."""
    total = int(round(float(duration) * float(fps)))
    k = total + 1 if loop else total - 1
    if total < 2 or k > max_frames:
        lo, hi = 2, (max_frames - 1 if loop else max_frames + 1)
        raise ValueError(
            f"{duration} s at {fps} fps is {total} frames; this model makes {lo} to {hi} "
            f"({lo / fps:.2f} to {hi / fps:.2f} s at {fps} fps)"
        )
    return k


def build_app(pipe, out_dir: str | Path | None = None, batch_size: int | None = None):
    """The Gradio Blocks of the page around an :class:`lvmm.pipeline.LVMMPipeline` (seeds in groups of
    ``batch_size``)."""
    import gradio as gr

    out_root = Path(out_dir or tempfile.mkdtemp(prefix="lvmm-app-"))
    max_frames = int(pipe.animator.extra.get("max_frames") or pipe.animator.extra["num_frames"])
    generate = generate_handler(pipe, out_root, batch_size, max_frames)
    on_click.__annotations__["evt"] = gr.SelectData  # Gradio finds the event by its type (annotations are strings here)
    with gr.Blocks(title="LVMM: bring a photo to life") as app:
        gr.Markdown(
            "# LVMM: bring a photo to life\nUpload a photo, paint the region that may move (optional), "
            "add drag arrows (optional), and press **Generate**."
        )
        image, drags, pending = gr.State(None), gr.State([]), gr.State(None)
        page = page_layout(int(pipe.animator.extra["num_frames"]))
        photo, editor, arrows, status = page["photo"], page["editor"], page["arrows"], page["status"]
        photo.change(on_photo, [photo], [editor, arrows, image, drags, pending, status])
        arrows.select(on_click, [image, drags, pending], [arrows, drags, pending, status])
        page["clear"].click(on_clear, [image], [arrows, drags, pending, status])
        settings = ("prompt", "audio", "mode", "strength", "seeds", "steps", "sampler", "duration", "fps")
        page["go"].click(
            generate,
            [image, editor, drags, *(page[name] for name in settings)],
            [page["video"], page["flow"], page["downloads"], status],
        )
    return app


def page_layout(default_k: int) -> dict:
    """The page's inputs and outputs by name, laid out (below the title) inside the current ``gr.Blocks``."""
    import gradio as gr

    c = {}
    with gr.Row():
        with gr.Column():
            c["photo"] = gr.File(label="Photo", file_types=None, type="filepath", elem_id="photo-upload")
            c["editor"] = gr.ImageEditor(
                label="Region brush: paint where the picture may move (nothing painted: everywhere)",
                type="numpy",
                sources=(),
                brush=gr.Brush(colors=["#ff3030"], color_mode="fixed"),
                transforms=(),
                layers=False,
                elem_id="brush",
            )
            c["arrows"] = gr.Image(
                label="Drag arrows: click a start point, then an end point",
                type="numpy",
                interactive=False,
                height=260,
                elem_id="arrows",
            )
            c["clear"] = gr.Button("Clear arrows", size="sm")
        with gr.Column():
            c["prompt"] = gr.Textbox(label="Text prompt (optional)", elem_id="prompt")
            c["audio"] = gr.File(label="Audio file (optional)", type="filepath", elem_id="audio-upload")
            c["mode"] = gr.Radio(list(MODES), value=MODES[0], label="Mode", elem_id="mode")
            c["strength"] = gr.Slider(0, 3, value=1.0, step=0.05, label="Motion strength (scales the displacement)")
            c["seeds"] = gr.Textbox(value="0", label="Seeds (e.g. 0-3 or 1,5,7)", elem_id="seeds")
            with gr.Row():
                c["steps"] = gr.Slider(2, 100, value=25, step=1, label="Steps", elem_id="steps")
                c["sampler"] = gr.Dropdown(["ddim", "dpmsolver++", "ddpm"], value="ddim", label="Sampler")
            with gr.Row():
                c["fps"] = gr.Number(value=8, minimum=1, maximum=60, label="fps", elem_id="fps")
                c["duration"] = gr.Number(
                    value=round((default_k + 1) / 8, 3), minimum=0.1, label="Duration (s)", elem_id="duration"
                )
            c["go"] = gr.Button("Generate", variant="primary", elem_id="generate")
            c["status"] = gr.Markdown("", elem_id="status")
    with gr.Row():
        c["video"] = gr.Video(label="Animation", elem_id="video", autoplay=True, loop=True)
        c["flow"] = gr.Video(label="Motion (flow colours)", elem_id="flow", autoplay=True, loop=True)
    c["downloads"] = gr.File(label="Downloads: mp4, gif, fields (.npy)", file_count="multiple", elem_id="downloads")
    return c


def on_photo(path):
    """A new upload: the brush editor, the arrow canvas and the photo (or a message why it cannot be used)."""
    from lvmm.media import MediaError, read_image

    if not path:
        return None, None, None, [], None, ""
    try:
        image = read_image(path)
        if min(image.shape[:2]) < 32:
            raise MediaError(
                f"{Path(path).name}: the photo is {image.shape[1]}x{image.shape[0]}; both sides must be at least "
                "32 pixels"
            )
    except MediaError as e:
        return None, None, None, [], None, f"**Cannot use this upload.** {_short(e, path)}"
    editor = {"background": image, "layers": [], "composite": image}
    return editor, draw_arrows(image, []), image, [], None, f"Photo {image.shape[1]}x{image.shape[0]} loaded."


def on_click(image, drags, pending, evt):
    """A click on the arrow canvas: the start of an arrow, or the end of the pending one (``evt``: the
    ``gr.SelectData`` of the click; :func:`build_app` annotates it so, as Gradio needs)."""
    if image is None:
        return None, drags, None, "Upload a photo first."
    x, y = (float(v) for v in evt.index[:2])
    if pending is None:
        return (
            draw_arrows(image, drags, (x, y)),
            drags,
            (x, y),
            f"Arrow start at ({x:.0f}, {y:.0f}); click its end.",
        )
    if len(drags) >= MAX_DRAGS:
        return draw_arrows(image, drags), drags, None, f"At most {MAX_DRAGS} arrows."
    drags = drags + [(tuple(pending), (x, y))]
    return draw_arrows(image, drags), drags, None, f"{len(drags)} arrow(s)."


def on_clear(image):
    """Drop every arrow."""
    return (draw_arrows(image, []) if image is not None else None), [], None, "Arrows cleared."


def generate_handler(pipe, out_root: Path, batch_size: int | None, max_frames: int):
    """The Generate button's handler: animate with the page's settings, write the downloads under ``out_root``."""
    import gradio as gr

    from lvmm.animation import AnimationError
    from lvmm.cli import parse_int_list
    from lvmm.media import MediaError

    def generate(
        image,
        editor,
        drags,
        prompt,
        audio,
        mode,
        strength,
        seeds_text,
        steps,
        sampler,
        duration,
        fps,
        progress=gr.Progress(),  # noqa: B008  (Gradio passes the progress tracker through this default)
    ):
        try:
            if image is None:
                raise ValueError("upload a photo first")
            loop = mode == MODES[1]
            k = frame_plan(duration, fps, loop, max_frames)
            seeds = parse_int_list(str(seeds_text))
            prompt = (prompt or "").strip() or None
            if prompt and audio:
                raise ValueError("give a text prompt or an audio file, not both")
            mask = mask_from_editor(editor, image.shape[:2])
            progress(0, desc="sampling")
            result = pipe(
                image,
                prompt=prompt,
                audio=audio or None,
                seeds=seeds,
                num_frames=k,
                loop=loop,
                batch_size=batch_size,
                steps=int(steps),
                sampler=sampler,
                motion_strength=float(strength),
                mask=mask,
                drags=drags or (),
                callback=lambda i, n: progress(i / n, desc=f"sampling step {i} of {n}"),
            )
        except (MediaError, AnimationError, ValueError, OSError) as e:
            return None, None, None, f"**Cannot animate.** {_short(e, audio)}"
        files, preview = write_downloads(result, image.shape[:2], Path(tempfile.mkdtemp(dir=out_root)), float(fps))
        return str(files[0]), str(preview), [str(f) for f in files], done_message(result, image, mask, drags, loop)

    return generate


def write_downloads(result, size: tuple[int, int], folder: Path, fps: float) -> tuple[list[Path], Path]:
    """Each seed's mp4 and gif and all the fields (.npy) in ``folder``; and a flow-colour preview of the first
    seed's motion at the photo's ``size`` (H, W)."""
    import numpy as np

    from lvmm.cli.animate import flow_video
    from lvmm.media import write_video

    files = []
    for seed, frames in zip(result.seeds, result.frames):
        files.append(write_video(folder / f"lvmm_seed{seed}.mp4", frames, fps))
        files.append(write_video(folder / f"lvmm_seed{seed}.gif", frames, fps))
    fields = np.stack([f.numpy().astype(np.float32) for f in result.fields])  # (S, T, 3, h, w)
    np.save(folder / "fields.npy", fields, allow_pickle=False)
    files.append(folder / "fields.npy")
    flow = flow_video(result.fields[0])  # (T, h, w, 3)
    h, w = size
    flow = np.repeat(np.repeat(flow, -(-h // flow.shape[1]), 1), -(-w // flow.shape[2]), 2)[:, :h, :w]
    preview = write_video(folder / f"flow_seed{result.seeds[0]}.mp4", np.ascontiguousarray(flow), fps)
    return files, preview


def done_message(result, image, mask, drags, loop: bool) -> str:
    """The status line after a generation: what was made, with which controls, and the loop's wrap ratio."""
    h, w = image.shape[:2]
    what = [f"{len(result.seeds)} seed(s), {result.frames[0].shape[0]} frames of {w}x{h}"]
    if mask is not None:
        what.append(f"region brush covers {100 * mask.mean():.0f} % of the photo")
    if drags:
        what.append(f"{len(drags)} drag arrow(s)")
    metrics = result.animations[0].metrics
    if loop and "wrap_frames" in metrics:
        what.append(f"wrap ratio (frames) {metrics['wrap_frames']:.2f}")
    return "Done: " + "; ".join(what) + "."


def _short(error: Exception, path=None) -> str:
    """The error's message with upload paths reduced to file names (the temp folder means nothing to a user)."""
    text = str(error)
    if path:
        text = text.replace(str(path), Path(str(path)).name)
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="a model package folder (tools/export.py)")
    source.add_argument("--ckpt", default=None, help="stage-two checkpoint (.ckpt or .safetensors)")
    p.add_argument("--stage1-ckpt", default=None, help="stage-one checkpoint (default: the one recorded in --ckpt)")
    p.add_argument(
        "--imagebind", default=None, help="ImageBind weights the model expects (none for the random tiny model)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=None, help="seeds sampled at once (default: all)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from lvmm.cli import load_pipeline

    pipe = load_pipeline(args)
    app = build_app(pipe, batch_size=args.batch_size)
    _patient_start_check()
    print(f"[app] serving on http://{args.host}:{args.port}", flush=True)
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, share=False, show_error=True, inbrowser=False
    )


def _patient_start_check(seconds: float = 90.0) -> None:
    """Gradio's launch checks that its own server answers, with one 3-second timeout, and refuses to serve
    otherwise; on a busy machine the first answer can take longer, so the check is retried for ``seconds``."""
    import time

    from gradio import networking

    check = networking.url_ok

    def url_ok(url: str) -> bool:
        deadline = time.time() + seconds
        while not check(url):
            if time.time() > deadline:
                return False
        return True

    networking.url_ok = url_ok


def run() -> None:
    """The console script `lvmm-app`: :func:`main` on the command line (its return value is for callers)."""
    main()


if __name__ == "__main__":
    main()
