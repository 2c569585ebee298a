"""Video fusion: an infrared and a visible video (or two image-sequence folders) into one fused video.

``ivfuse fuse --video IR VI -o OUT.mp4`` is :func:`fuse_video`::

    import ivfuse
    from ivfuse.video import fuse_video
    result = fuse_video(ivfuse.load("lp"), "ir.mp4", "vi.mp4", "fused.mp4")

How frames are paired, read, fused and written:

* **Pairing by timestamp.** The visible video drives the output: one fused frame per visible frame.
  Each visible frame at time *t* takes the infrared frame with the latest timestamp at or before *t*
  (the nearest *earlier* frame; never a later one), so the two videos may have different frame rates.
  Timestamps are counted from each video's first frame (two files of a rig share no clock). After the
  last infrared frame, the last one is reused. Image-sequence folders carry no timestamps: two folders
  are paired by file stem when their stems are the same, else by sorted name order (equal counts
  needed). A video and a folder cannot be mixed.
* **Streaming.** Frames are decoded, fused and encoded as they come (generators), in chunks of
  ``batch_size`` frames handed to the method's ``fuse_batch`` (a deep method runs a chunk as one tensor
  batch, on a GPU when the pipeline has one): memory does not grow with the length of the video.
* **Registration.** With an :class:`Alignment` (``--register`` / ``--transform``), the infrared frames
  are put on the visible grid (:mod:`ivfuse.register`): the transform is estimated once, on the first
  frame pair (or read from a file), and applied to every frame: a rig is rigid.
* **Output.** A video file (``.mp4``, ``.mkv``, ``.avi``, ``.mov``, ``.webm``) with, by default, the
  codec, frame rate, pixel format and bit rate of the visible video. When that codec cannot be
  written (or the container does not hold it) the first writable of ``libx264``, ``h264``, ``mpeg4``
  is used instead; image-sequence inputs have no codec and get that list too. The frame rate of an
  image-sequence input is ``fps`` (default 25). Audio is not copied. Or an image-sequence folder
  (an output path without a video extension): one image per frame, named after the visible frame's
  file stem (folder input) or ``frame_000000`` ... (video input).
* **Clean stop.** The output is written to a hidden temporary file (folder) next to it and renamed at
  the end: an error or Ctrl-C (``KeyboardInterrupt``) leaves either the complete output or none (and
  no temporary file).

Reading and writing use PyAV (FFmpeg bindings; ``pip install av``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .errors import InputError
from .register import Alignment

__all__ = [
    "Alignment",
    "Frame",
    "SourceInfo",
    "VideoResult",
    "fuse_video",
    "pair_by_time",
    "pair_sequences",
    "paired_frames",
    "probe",
    "read_frames",
    "video_consistency",
]

#: output container format per file extension
VIDEO_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mkv": "matroska",
    ".avi": "avi",
    ".mov": "mov",
    ".webm": "webm",
}
#: encoders tried, in order, when the visible video's codec cannot be written
FALLBACK_CODECS = ("libx264", "h264", "mpeg4")
#: frame rate of an image-sequence input written as a video, when none is given
DEFAULT_FPS = Fraction(25)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise InputError("video needs PyAV: pip install av") from exc
    return av


def is_video_file(path: str | os.PathLike) -> bool:
    """True for a path with a video extension (:data:`VIDEO_FORMATS`)."""
    return Path(path).suffix.lower() in VIDEO_FORMATS


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index, time in seconds from the first frame (exact), image (uint8
    RGB (H, W, 3) for a video; as stored for an image file) and name (file stem, or ``frame_NNNNNN``)."""

    index: int
    time: Fraction
    image: np.ndarray
    name: str


@dataclass(frozen=True)
class SourceInfo:
    """What :func:`probe` finds about a video file or an image-sequence folder."""

    path: Path
    kind: str  # "video" or "images"
    width: int
    height: int
    frames: int | None  # None when the container does not say
    fps: Fraction | None  # average frame rate (None for image sequences)
    codec: str | None = None
    pix_fmt: str | None = None
    bit_rate: int | None = None


def probe(path: str | os.PathLike) -> SourceInfo:
    """Size, frame count, frame rate and codec of a video file or an image-sequence folder."""
    p = Path(path)
    if p.is_dir():
        files = _sequence_files(p)
        first = io.read_image(files[0])
        return SourceInfo(p, "images", first.shape[1], first.shape[0], len(files), None)
    if not p.is_file():
        raise InputError(f"{p}: no such video file or image folder")
    av = _av()
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise InputError(f"{p}: no video stream")
            s = container.streams.video[0]
            cc = s.codec_context
            rate = s.average_rate or s.guessed_rate
            return SourceInfo(
                p,
                "video",
                cc.width,
                cc.height,
                s.frames or None,
                Fraction(rate) if rate else None,
                cc.name,
                cc.pix_fmt,
                cc.bit_rate or s.bit_rate or None,
            )
    except av.error.FFmpegError as exc:
        raise InputError(f"{p}: cannot read as a video ({exc})") from None


def _sequence_files(folder: Path) -> list[Path]:
    from .data.pairs import list_images

    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: no images in the folder")
    return files


def read_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """The frames of a video file (decoded to 8-bit RGB) or of an image-sequence folder (sorted by
    name, time = index), one at a time. The file is closed when the generator is closed."""
    p = Path(path)
    if p.is_dir():
        for i, f in enumerate(_sequence_files(p)):
            yield Frame(i, Fraction(i), io.read_image(f), f.stem)
        return
    av = _av()
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"{p}: cannot read as a video ({exc})") from None
    with closing(container):
        if not container.streams.video:
            raise InputError(f"{p}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start: Fraction | None = None
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.pts is not None and frame.time_base is not None:
                    t = Fraction(frame.pts) * Fraction(frame.time_base)
                else:
                    t = Fraction(i) / Fraction(rate)
                if start is None:
                    start = t
                yield Frame(i, t - start, frame.to_ndarray(format="rgb24"), f"frame_{i:06d}")
        except av.error.FFmpegError as exc:
            raise InputError(f"{p}: decoding failed ({exc})") from None


def pair_by_time(ir: Iterable[Frame], vi: Iterable[Frame]) -> Iterator[tuple[Frame, Frame]]:
    """(infrared, visible) for every visible frame: the infrared frame with the latest time at or
    before the visible frame's time (the last infrared frame once they run out). Streams: holds
    two infrared frames at a time."""
    ir_it = iter(ir)
    current = next(ir_it, None)
    if current is None:
        raise InputError("the infrared video has no frames")
    ahead = next(ir_it, None)
    for v in vi:
        while ahead is not None and ahead.time <= v.time:
            current, ahead = ahead, next(ir_it, None)
        yield current, v


def pair_sequences(ir_dir: Path, vi_dir: Path) -> list[tuple[Path, Path]]:
    """Two image-sequence folders as (infrared file, visible file) pairs: by stem when both folders
    hold the same stems, else by sorted name order (equal counts needed)."""
    if io.same_file(ir_dir, vi_dir):
        raise InputError(f"{ir_dir} and {vi_dir} are the same folder")
    ir_files, vi_files = _sequence_files(ir_dir), _sequence_files(vi_dir)
    ir_stems = {f.stem: f for f in ir_files}
    vi_stems = {f.stem: f for f in vi_files}
    if len(ir_stems) == len(ir_files) and ir_stems.keys() == vi_stems.keys():
        return [(ir_stems[s], vi_stems[s]) for s in sorted(vi_stems)]
    if len(ir_files) != len(vi_files):
        raise InputError(
            f"image sequences differ: {len(ir_files)} infrared and {len(vi_files)} visible frames, "
            "and their file stems do not match"
        )
    return list(zip(ir_files, vi_files, strict=True))


def paired_frames(ir: str | os.PathLike, vi: str | os.PathLike) -> Iterator[tuple[Frame, Frame]]:
    """(infrared, visible) frame pairs of two videos (:func:`pair_by_time`) or two image-sequence
    folders (:func:`pair_sequences`), streamed."""
    ir_p, vi_p = Path(ir), Path(vi)
    if ir_p.is_dir() != vi_p.is_dir():
        raise InputError("give two video files or two image folders, not one of each")
    if ir_p.is_dir():
        for i, (a, b) in enumerate(pair_sequences(ir_p, vi_p)):
            yield (
                Frame(i, Fraction(i), io.read_image(a), a.stem),
                Frame(i, Fraction(i), io.read_image(b), b.stem),
            )
        return
    if io.same_file(ir_p, vi_p):
        raise InputError(f"{ir_p} and {vi_p} are the same file")
    with closing(read_frames(ir_p)) as ir_frames, closing(read_frames(vi_p)) as vi_frames:
        yield from pair_by_time(ir_frames, vi_frames)


# ---------------------------------------------------------------------------------------------
# writing


class _SequenceWriter:
    """Frames as images in a hidden temporary folder, moved into ``target`` by :meth:`commit`."""

    def __init__(self, target: Path, ext: str) -> None:
        self.target = target
        self.ext = ext if ext.startswith(".") else "." + ext
        if self.ext.lower() not in io.IMAGE_EXTENSIONS:
            raise InputError(f"--ext {ext}: use one of {', '.join(io.IMAGE_EXTENSIONS)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        self.codec = None

    def write(self, image: np.ndarray, name: str) -> None:
        io.write_image(self.tmp / f"{name}{self.ext}", image)

    def commit(self) -> None:
        os.chmod(self.tmp, 0o777 & ~io._umask())
        if not self.target.exists():
            os.replace(self.tmp, self.target)
            return
        for f in sorted(self.tmp.iterdir()):  # --overwrite into an existing folder
            os.replace(f, self.target / f.name)
        self.tmp.rmdir()

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _VideoWriter:
    """An encoder writing to a hidden temporary file, renamed to ``target`` by :meth:`commit`."""

    def __init__(
        self,
        target: Path,
        *,
        width: int,
        height: int,
        rate: Fraction,
        codec: str | None,
        pix_fmt: str | None,
        bit_rate: int | None,
        fallback: bool,
    ) -> None:
        av = _av()
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self.tmp = Path(name)
        self.container = None
        try:
            self.container = av.open(str(self.tmp), "w", format=VIDEO_FORMATS[target.suffix.lower()])
            self.stream, self.codec = self._add_stream(codec, fallback, rate)
            cc = self.stream.codec_context
            self.stream.width, self.stream.height = width, height
            formats = [f.name for f in (cc.codec.video_formats or ())]
            if pix_fmt in formats or (pix_fmt and not formats):
                self.stream.pix_fmt = pix_fmt
            elif "yuv420p" in formats:
                self.stream.pix_fmt = "yuv420p"
            elif formats:
                self.stream.pix_fmt = formats[0]
            if bit_rate and self.codec == codec:
                cc.bit_rate = int(bit_rate)
            self.index = 0
        except BaseException:
            self.abort()
            raise

    def _add_stream(self, codec: str | None, fallback: bool, rate: Fraction) -> tuple[Any, str]:
        av = _av()
        supported = getattr(self.container, "supported_codecs", None)
        tried = []
        for name in ([codec] if codec else []) + (list(FALLBACK_CODECS) if fallback or not codec else []):
            if name in tried:
                continue
            tried.append(name)
            try:
                c = av.codec.Codec(name, "w")
            except Exception:  # noqa: BLE001 - unknown to this FFmpeg build (UnknownCodecError, ...)
                continue
            if supported is not None and c.name not in supported and name not in supported:
                continue
            try:
                return self.container.add_stream(name, rate=rate), name
            except (av.error.FFmpegError, ValueError):
                continue
        raise InputError(
            f"{self.target}: no codec among {', '.join(tried)} can be written to a {self.target.suffix} file"
        )

    def write(self, image: np.ndarray, name: str) -> None:
        av = _av()
        data = io.from_unit(image, 8)
        frame = av.VideoFrame.from_ndarray(data, format="rgb24" if data.ndim == 3 else "gray")
        frame.pts = self.index
        self.index += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def commit(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.chmod(self.tmp, 0o666 & ~io._umask())
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - the file is removed anyway
                pass
            self.container = None
        self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# fusing


@dataclass(frozen=True)
class VideoResult:
    """What :func:`fuse_video` wrote."""

    output: Path
    frames: int
    seconds: float  # wall time of the whole run
    kind: str  # "video" or "images"
    codec: str | None  # the encoder used (None for image sequences)
    fps: Fraction | None  # frame rate of the output video
    size: tuple[int, int]  # (width, height)
    registration: Any = None  # the ivfuse.register.Registration applied, or None

    @property
    def frames_per_second(self) -> float:
        """Frames fused (decoded, registered, fused and encoded) per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def refuse_video_output(out: str | os.PathLike, ir: str | os.PathLike, vi: str | os.PathLike) -> None:
    """:class:`InputError` when ``out`` is one of the inputs, or an output folder lies in an input
    folder."""
    from .api import refuse_input_as_output, refuse_output_folder_in_inputs

    refuse_input_as_output(out, (ir, vi))
    if not is_video_file(out):
        folders = [Path(p) for p in (ir, vi) if Path(p).is_dir()]
        refuse_output_folder_in_inputs(out, folders)


def _plane(arr: np.ndarray, stretch16: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A visible frame as the luma plane the method fuses, and its YCbCr when colour (the same
    conversion as :meth:`ivfuse.api.Pipeline.fuse`)."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    unit = io.to_unit(arr, stretch16=stretch16)
    if unit.ndim == 3 and not io.is_gray_rgb(arr):
        ycc = io.rgb_to_ycbcr(unit)
        return np.ascontiguousarray(np.clip(ycc[..., 0], 0, 1)), ycc
    return np.ascontiguousarray(unit[..., 0] if unit.ndim == 3 else unit), None


def _ir_gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return io.to_gray(arr, warn=False)


def fuse_video(
    pipeline: Any,
    ir: str | os.PathLike,
    vi: str | os.PathLike,
    out: str | os.PathLike,
    *,
    align: Alignment | None = None,
    batch_size: int = 8,
    codec: str | None = None,
    fps: float | Fraction | None = None,
    ext: str = "png",
    overwrite: bool = False,
    max_frames: int | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> VideoResult:
    """Fuse an infrared and a visible video (or image-sequence folders) into ``out`` with
    ``pipeline`` (an :class:`ivfuse.api.Pipeline`, task ``ivif``); see the module docstring.

    Args:
        align: register the infrared frames first (estimated on the first pair, or a given transform).
        batch_size: frames per ``fuse_batch`` call.
        codec: encoder of the output video (default: the visible video's codec, see the module
            docstring). A codec named here is used or refused, never replaced.
        fps: frame rate of the output video (default: the visible video's; 25 for image sequences).
        ext: image format of an image-sequence output.
        overwrite: replace an existing output (else :class:`InputError`).
        max_frames: fuse only the first ``max_frames`` visible frames (a preview).
        progress: called as ``progress(frames_done, frames_total_or_None)`` after each chunk.

    Raises:
        InputError: unreadable inputs, an output that is an input, an existing output without
            ``overwrite``, a registration refused for low confidence
            (:class:`ivfuse.register.RegistrationError`), frames of different sizes without ``align``.
    """
    from .register import align_pair

    t0 = time.perf_counter()
    ir_p, vi_p, out_p = Path(ir), Path(vi), Path(out)
    if getattr(pipeline, "task", "ivif") != "ivif":
        raise InputError("video fusion is for infrared-visible pairs (--task ivif)")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    refuse_video_output(out_p, ir_p, vi_p)
    video_out = is_video_file(out_p)
    if not video_out and out_p.suffix and not out_p.is_dir():
        raise InputError(
            f"{out_p}: unknown video format {out_p.suffix!r}; use one of {', '.join(VIDEO_FORMATS)} "
            "or a folder for an image sequence"
        )
    if out_p.exists() and not overwrite and not (out_p.is_dir() and not any(out_p.iterdir())):
        raise InputError(f"{out_p} exists; pass --overwrite to replace it")
    probe(ir_p)  # an unreadable input fails here, the infrared one (given first) named first
    info = probe(vi_p)
    total = info.frames if max_frames is None else min(info.frames or max_frames, max_frames)
    rate = Fraction(fps).limit_denominator(1001 * 1000) if fps else (info.fps or DEFAULT_FPS)
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    transform = align.transform if align is not None else None

    stretch16 = getattr(pipeline, "stretch16", True)
    writer: _VideoWriter | _SequenceWriter | None = None
    reg = None
    done = 0
    try:
        with closing(paired_frames(ir_p, vi_p)) as pairs:
            chunk: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]] = []

            def flush() -> None:
                nonlocal done
                planes = pipeline.method.fuse_batch([c[0] for c in chunk], [c[1] for c in chunk])
                for (ir_plane, _, ycc, name), fused in zip(chunk, planes, strict=True):
                    fused = np.clip(np.asarray(fused, dtype=np.float32), 0, 1)
                    if fused.shape != ir_plane.shape:
                        label = pipeline.info.name
                        raise RuntimeError(
                            f"method {label} returned shape {fused.shape}, expected {ir_plane.shape}"
                        )
                    if ycc is not None:  # the frame's own YCbCr: filled in place
                        ycc[..., 0] = fused
                        fused = io.ycbcr_to_rgb(ycc)
                    writer.write(fused, name)
                done += len(chunk)
                chunk.clear()
                if progress is not None:
                    progress(done, total)

            for ir_frame, vi_frame in islice(pairs, max_frames):
                ir_img = _ir_gray(ir_frame.image)
                vi_img = vi_frame.image
                if align is not None:
                    if reg is None:
                        ir_img, reg = align_pair(
                            ir_img,
                            vi_img,
                            model=align.model,
                            transform=transform,
                            min_confidence=None if transform is not None else align.min_confidence,
                        )
                    else:
                        ir_img, _ = align_pair(ir_img, vi_img, transform=reg)
                elif ir_img.shape[:2] != vi_img.shape[:2]:
                    (hi, wi), (hv, wv) = ir_img.shape[:2], vi_img.shape[:2]
                    raise InputError(
                        f"infrared frames are {wi}x{hi} but visible frames {wv}x{hv}: register them "
                        "(--register or --transform T.json)"
                    )
                vi_plane, ycc = _plane(vi_img, stretch16)
                ir_plane = io.to_unit(ir_img, stretch16=stretch16)
                if writer is None:
                    h, w = vi_plane.shape
                    if video_out:
                        writer = _VideoWriter(
                            out_p,
                            width=w,
                            height=h,
                            rate=rate,
                            codec=codec or info.codec,
                            pix_fmt=info.pix_fmt,
                            bit_rate=info.bit_rate,
                            fallback=codec is None,
                        )
                    else:
                        writer = _SequenceWriter(out_p, ext)
                chunk.append((np.ascontiguousarray(ir_plane), vi_plane, ycc, vi_frame.name))
                if len(chunk) >= batch_size:
                    flush()
            if chunk:
                flush()
        if writer is None:
            raise InputError(f"{vi_p}: no frames")
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    h, w = (info.height, info.width)
    return VideoResult(
        out_p,
        done,
        time.perf_counter() - t0,
        "video" if video_out else "images",
        writer.codec,
        rate if video_out else None,
        (w, h),
        reg,
    )


# ---------------------------------------------------------------------------------------------
# temporal consistency of a fused video


def video_consistency(
    fused: str | os.PathLike,
    ir: str | os.PathLike,
    vi: str | os.PathLike,
    *,
    transform: Any = None,
    motion: bool = True,
    flow: str = "dis",
    max_frames: int | None = None,
) -> Any:
    """:func:`ivfuse.metrics.temporal.temporal_consistency` of a fused video (file or image folder)
    against its sources, read frame by frame: fused frame k goes with visible frame k, and the
    infrared frames are paired with the visible ones as in :func:`fuse_video` (nearest earlier
    timestamp). ``transform`` (a Registration or a JSON file) puts infrared frames of another size
    on the visible grid first, as ``ivfuse fuse --video --transform`` did. ``max_frames``: only the
    first frames."""
    from itertools import tee

    from .metrics.temporal import temporal_consistency
    from .register import align_pair, load_transform

    if isinstance(transform, str | os.PathLike):
        transform = load_transform(transform)
    fused_p = Path(fused)
    frames = read_frames(fused_p)
    pairs = paired_frames(ir, vi)
    with closing(frames), closing(pairs):
        a, b = tee(islice(pairs, max_frames))

        def ir_frames() -> Iterator[np.ndarray]:
            for irf, vif in a:
                img = _ir_gray(irf.image)
                if transform is not None:
                    img, _ = align_pair(img, vif.image, transform=transform)
                yield img

        return temporal_consistency(
            (f.image for f in islice(frames, max_frames)),
            ir_frames(),
            (p[1].image for p in b),
            motion=motion,
            flow=flow,
        )
