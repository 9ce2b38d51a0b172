"""Video inspection, streaming decoding and writing with PyAV.

Decoding streams: frames are decoded one at a time, only the wanted ones are
converted (and resized on the fly by swscale), and decoding stops after the
last wanted frame, so a long video never sits in memory at full size;
:func:`read_clip` decodes only the stretches holding wanted frames, each from
the keyframe before it (FFmpeg threads the decoder). Every
unreadable input is a :class:`DataError` naming the file and the reason
(missing, empty, truncated, not a video, no video stream, unsupported codec).

mmaction2's ``PyAVInit``/``PyAVDecode`` transforms decode every frame up to the
last index at full size inside a training pipeline; the functions here serve
scoring and generators outside one, so they talk to PyAV directly.

Example::

    info = probe("cam1.mp4")                      # VideoInfo(fps=25.0, frames=750, ...)
    clip = read_clip("cam1.mp4", [0, 8, 16], size=(112, 112))   # (3, 112, 112, 3), uint8 RGB
    write_video("out.mp4", clip, fps=25)

Which frames to read is :mod:`vkit.core.sampling`'s job (``FrameSampler``, ``sample_segments``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vkit.core.files import NotRegularFileError, check_regular, open_regular
from vkit.registry.errors import DataError

__all__ = ["VideoInfo", "iter_frames", "probe", "read_clip", "write_video"]

#: Leading bytes of containers that are videos (a file starting so but unreadable is truncated/corrupt).
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/MOV"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "AVI"),
    (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"\x47", "MPEG-TS"),
    (0, b"OggS", "Ogg"),
)
#: Frames a decode may fall short of the container's count before it counts as truncated.
_SHORTFALL = 2


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video without decoding it.

    Attributes:
        path: the file, as given.
        size: bytes on disk.
        duration: seconds.
        fps: average frames per second.
        frames: number of frames (from the container, or counted from packets).
        width, height: frame size in pixels.
        codec: decoder name, e.g. ``'h264'``.
    """

    path: str
    size: int
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    codec: str


def _av() -> Any:
    import av

    return av


def _container_kind(path: Path) -> str | None:
    with open_regular(path) as handle:
        head = handle.read(12)
    for offset, magic, kind in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return kind
    return None


def _open(path: str | Path) -> tuple[Any, Path]:
    """Open ``path`` for reading, turning every failure into a DataError with its reason."""
    av = _av()
    file = Path(path)
    try:
        size = check_regular(file).st_size  # a FIFO or a device is refused before FFmpeg could block on it
    except FileNotFoundError:
        raise DataError(f"{file}: missing (no such file)") from None
    except NotRegularFileError:
        raise
    except OSError as err:
        raise DataError(f"{file}: unreadable ({_reason(err)})") from err
    if size == 0:
        raise DataError(f"{file}: empty file (0 bytes)")
    try:
        container = av.open(str(file), mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        kind = _container_kind(file)
        reason = f"truncated or corrupt {kind} file" if kind else "not a video file"
        raise DataError(f"{file}: {reason} ({_reason(err)})") from err
    if container.format.name.endswith("_pipe") or container.format.name == "image2":  # FFmpeg reads a still image
        name = container.format.long_name or container.format.name
        container.close()
        raise DataError(f"{file}: not a video file (an image: {name})")
    return container, file


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _video_stream(container: Any, file: Path) -> Any:
    av = _av()
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        kind = _container_kind(file)
        if kind and not {"audio", "subtitle"} & set(kinds):  # an index cut short reads as data-only streams
            raise DataError(f"{file}: truncated or corrupt {kind} file (no readable stream; found: {', '.join(kinds)})")
        raise DataError(f"{file}: no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    name = stream.codec_context.name if stream.codec_context is not None else "unknown"
    try:
        av.codec.Codec(name, "r")
    except Exception as err:  # UnknownCodecError: no decoder in this FFmpeg build
        container.close()
        raise DataError(f"{file}: unsupported codec {name!r} (this FFmpeg has no decoder for it)") from err
    if not stream.codec_context.width or not stream.codec_context.height:
        container.close()
        raise DataError(f"{file}: truncated or corrupt video stream (frame size unknown)")
    return stream


def _fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _count_frames(container: Any, stream: Any) -> int:
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def probe(path: str | Path) -> VideoInfo:
    """Inspect a video without decoding its frames.

    Args:
        path: the video file.

    Raises:
        DataError: naming the file and the reason: missing, empty, truncated,
            not a video, no video stream, unsupported codec.

    Example::

        probe("clip.mp4").fps   # 25.0
    """
    container, file = _open(path)
    with container:
        stream = _video_stream(container, file)
        fps = _fps(stream)
        frames = int(stream.frames or 0)
        if frames <= 0:
            try:
                frames = _count_frames(container, stream)
            except _av().error.FFmpegError as err:
                raise DataError(f"{file}: truncated or corrupt video stream ({_reason(err)})") from err
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = frames / fps if fps else 0.0
        if frames <= 0:
            raise DataError(f"{file}: no frames in the video stream (truncated or empty video)")
        return VideoInfo(
            path=str(path), size=file.stat().st_size, duration=duration, fps=fps, frames=frames,
            width=int(stream.codec_context.width), height=int(stream.codec_context.height),
            codec=str(stream.codec_context.name),
        )


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or s <= 0 for s in size):
        raise DataError(f"size: expected (height, width) of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def _to_array(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
    """One RGB frame, scaled on this thread: swscale's own slice threads (its default) hang in a decoding worker
    forked from a process that has threads (its ``avpriv_slicethread_free`` waits forever); workers already decode
    in parallel, one per process."""
    if size is None:
        return frame.to_ndarray(format="rgb24", threads=1)
    return frame.to_ndarray(format="rgb24", height=size[0], width=size[1], interpolation="AREA", threads=1)


def _decode(
    path: str | Path, wanted: set[int] | None, size: tuple[int, int] | None, counter: list[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the wanted indices (all if ``None``), decoding sequentially and stopping early.

    ``counter[0]`` is set to the number of frames decoded so far.
    """
    av = _av()
    size = _check_size(size)
    counter = counter if counter is not None else [0]
    container, file = _open(path)
    with container:
        stream = _video_stream(container, file)
        stream.thread_type = "AUTO"
        last = max(wanted) if wanted else None
        try:
            for frame in container.decode(stream):
                index = counter[0]
                counter[0] += 1
                if wanted is None or index in wanted:
                    yield index, _to_array(frame, size)
                if last is not None and index >= last:
                    return
        except av.error.FFmpegError as err:
            raise DataError(f"{file}: truncated or corrupt video data after frame {counter[0]} ({_reason(err)})") from err
        if counter[0] == 0:
            raise DataError(f"{file}: no decodable frames (truncated or corrupt video)")


def iter_frames(path: str | Path, size: tuple[int, int] | None = None, step: int = 1) -> Iterator[np.ndarray]:
    """Yield every ``step``-th frame as RGB ``uint8`` ``(H, W, 3)``, resized to ``size`` (height, width) if given.

    Example::

        for frame in iter_frames("clip.mp4", size=(224, 224), step=5):
            ...
    """
    if not isinstance(step, int) or step < 1:
        raise DataError(f"{path}: step: expected an int >= 1, got {step!r}")
    for index, frame in _decode(path, None, size):
        if index % step == 0:
            yield frame


def _frame_index(container: Any, stream: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Presentation timestamps of every frame (index ``i`` is the ``i``-th smallest) and of the keyframes, from the
    packets alone (no decoding); ``None`` when some packet has no timestamp (then only sequential decoding is exact)."""
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.pts is None:
            if not packet.size:
                continue  # the demuxer's empty flush packet
            return None
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    if not pts or not keys:
        return None
    return np.sort(np.asarray(pts, dtype=np.int64)), np.sort(np.asarray(keys, dtype=np.int64))


def _decode_seeking(path: str | Path, wanted: Sequence[int], size: tuple[int, int] | None) -> dict[int, np.ndarray] | None:
    """The wanted frames, decoding only from the keyframe before each sampled stretch; ``None`` when seeking cannot
    be trusted for this file (no timestamps, an index past the last packet, a frame not where the index puts it):
    the caller then decodes sequentially, which also owns every error message.

    A frame is identified by its presentation timestamp, so B-frames (decode order
    differs from display order) and variable frame rates are exact.
    """
    av = _av()
    size = _check_size(size)
    container, file = _open(path)
    with container:
        stream = _video_stream(container, file)
        stream.thread_type = "AUTO"
        try:
            index = _frame_index(container, stream)
            order = sorted(set(int(i) for i in wanted))
            if index is None or order[-1] >= len(index[0]):
                return None
            pts, keys = index
            by_pts = {int(pts[i]): i for i in order}
            got: dict[int, np.ndarray] = {}
            frames, position, floor = None, None, None
            for i in order:
                if i in got:
                    continue
                target = int(pts[i])
                key = int(keys[np.searchsorted(keys, target, side="right") - 1])
                if frames is None or position is None or key > position:
                    container.seek(key, stream=stream, backward=True, any_frame=False)
                    frames, floor = container.decode(stream), key
                for frame in frames:
                    if frame.pts is None:
                        return None
                    position = frame.pts
                    if position >= floor and position in by_pts and by_pts[position] not in got:
                        got[by_pts[position]] = _to_array(frame, size)
                    if position >= target:
                        break
                if i not in got:
                    return None
            return got
        except av.error.FFmpegError:
            return None


def read_clip(
    path: str | Path, indices: Sequence[int] | np.ndarray, size: tuple[int, int] | None = None, *, frames: int | None = None,
    seek: bool = True,
) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed) as ``uint8`` ``(len(indices), H, W, 3)`` RGB.

    With ``seek`` (the default) only the stretches that hold wanted frames are
    decoded: each starts at the keyframe before it, found from the packet index
    (one demux pass, no decoding), so a few segments of an hour-long recording
    cost a few GOPs each instead of the whole file. Frames are matched by
    timestamp, so the result equals sequential decoding (B-frames included);
    files whose packets lack timestamps are decoded sequentially.

    Args:
        path: the video.
        indices: 0-based frame indices.
        size: ``(height, width)`` to resize to while decoding; ``None`` keeps the original size.
        frames: the container's frame count if known (saves a probe). When the
            video decodes up to :data:`_SHORTFALL` frames short of that count
            (common container rounding), missing tail indices repeat the last
            frame; a larger shortfall is a truncated file.
        seek: seek to keyframes (``False``: decode from the start up to the last wanted frame).

    Example::

        read_clip("clip.mp4", [0, 8, 15], size=(112, 112)).shape   # (3, 112, 112, 3)
    """
    order = np.asarray(indices, dtype=np.int64).reshape(-1)
    if order.size == 0:
        raise DataError(f"{path}: indices: expected at least one frame index, got none")
    if order.min() < 0:
        raise DataError(f"{path}: indices: expected frame indices >= 0, got {int(order.min())}")
    counter = [0]
    got = _decode_seeking(path, order.tolist(), size) if seek else None
    if got is not None:
        return np.stack([got[i] for i in order.tolist()])
    got = dict(_decode(path, set(order.tolist()), size, counter))
    missing = sorted(set(order.tolist()) - set(got))
    if missing:
        decoded = counter[0]
        expected = frames if frames is not None else probe(path).frames
        shown = f"{missing[:5]}{'...' if len(missing) > 5 else ''}"
        if decoded >= expected - _SHORTFALL and missing[-1] >= expected:
            raise DataError(f"{path}: frame indices {shown} out of range: the video has {expected} frames")
        if decoded == 0 or decoded < expected - _SHORTFALL:
            raise DataError(f"{path}: truncated: frames {shown} requested, only {decoded} of {expected} frames decode")
        tail = got[max(got)] if got and max(got) == decoded - 1 else read_clip(path, [decoded - 1], size, frames=expected)[0]
        got.update({i: tail for i in missing})
    return np.stack([got[i] for i in order.tolist()])


def _encoder(codec: str | None) -> str:
    av = _av()
    if codec is not None:
        if codec not in av.codecs_available:
            raise DataError(f"write_video: codec {codec!r} is not available in this FFmpeg build")
        return codec
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    codec: str | None = None,
    crf: int = 18,
    gop: int | None = None,
) -> Path:
    """Write RGB ``uint8`` frames ``(T, H, W, 3)`` (an array or an iterable of ``(H, W, 3)``) as an MP4.

    H.264 (``libx264``) when FFmpeg has it, else MPEG-4 Part 2; ``yuv420p``, so
    width and height must be even; ``faststart`` puts the index first.

    Args:
        path: the ``.mp4`` to write (parent folders are created).
        frames: the frames; a generator is written without holding them all.
        fps: frames per second (> 0).
        codec: force an encoder (e.g. ``'mpeg4'``).
        crf: H.264 quality (0 lossless-ish ... 51 worst); MPEG-4 uses a matching ``qscale``.
        gop: keyframe interval; ``None`` leaves the encoder's default.

    Example::

        write_video("demo.mp4", np.zeros((16, 48, 64, 3), np.uint8), fps=8)
    """
    av = _av()
    path = Path(path)
    if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
        raise DataError(f"{path}: fps: expected a positive number, got {fps!r}")
    encoder = _encoder(codec)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _encode(av, path, frames, fps, encoder, crf, gop)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _encode(av: Any, path: Path, frames: np.ndarray | Iterable[np.ndarray], fps: float, encoder: str, crf: int,
            gop: int | None) -> int:
    count = 0
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = None
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise DataError(f"{path}: frame {count}: expected uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
            if stream is None:
                height, width = frame.shape[:2]
                if height % 2 or width % 2:
                    raise DataError(f"{path}: frames are {width}x{height}; yuv420p video needs even width and height")
                stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                if gop is not None:
                    stream.codec_context.gop_size = int(gop)
                if encoder == "libx264":
                    stream.options = {"crf": str(int(crf))}
                else:
                    from av.codec.context import Flags

                    stream.codec_context.flags |= Flags.qscale
                    stream.codec_context.qscale = max(1, min(31, 1 + int(crf) // 2))
            elif frame.shape[:2] != (stream.height, stream.width):
                raise DataError(f"{path}: frame {count} is {frame.shape[1]}x{frame.shape[0]}, "
                                f"expected {stream.width}x{stream.height} like frame 0")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is None:
            raise DataError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
    return count
