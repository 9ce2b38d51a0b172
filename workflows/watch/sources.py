"""Live sources for ``vkit watch``: what a SOURCE argument names, and a reader thread per source.

A source is a network URL (``rtsp://``, ``rtmp://``, ``http(s)://``, ``tcp://``,
``udp://``, ``srt://``, ``rtp://``), a V4L2 device (``/dev/video0``) or a file
(read as fast as it decodes, at its own frame rate with ``realtime``, or
followed while it grows with ``follow``). Everything is opened by FFmpeg
through PyAV.

:class:`StreamReader` decodes one source on its own thread: frames are cut
into windows (:class:`~vkit.workflows.watch.windows.WindowCutter`) and each
finished window goes into the stream's bounded queue
(:class:`~vkit.workflows.watch.windows.StreamState`: the oldest waiting window
is dropped when scoring falls behind). A network source that fails or ends is
reopened with backoff, and the engine hears of it (``disconnected`` then
``connected``) to record the gap. Packets that do not decode are counted and
skipped.

Example::

    spec = parse_source("rtsp://bob:pw@cam1/live", rtsp_transport="tcp")
    spec.shown        # 'rtsp://bob:***@cam1/live' (what the store and the console show)
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from vkit.registry.errors import ConfigError, DataError

#: URL schemes FFmpeg opens as live network sources.
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt", "rtp")
#: Reconnect backoff: first wait and longest wait, in seconds.
BACKOFF = (0.5, 10.0)


@dataclass
class SourceSpec:
    """One SOURCE argument, parsed.

    Attributes:
        url: what FFmpeg opens (may hold credentials: never stored or printed).
        shown: the source as stored and printed (credentials masked; a file: its absolute path).
        kind: ``network``, ``device`` or ``file``.
        options: FFmpeg options (``rtsp_transport`` ...).
        realtime: play a file at its own frame rate.
        follow: a file that is still being written: wait for more at its end.
        labels: ``key=value`` pairs of the source's query that FFmpeg is not given (``session``, ``learner``).
        format: the FFmpeg input format to force (``v4l2`` for a device), or ``None``.
    """

    url: str
    shown: str
    kind: str
    options: dict[str, str] = field(default_factory=dict)
    realtime: bool = False
    follow: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    format: str | None = None

    @property
    def live(self) -> bool:
        """Whether the source reconnects when it ends (network sources and devices)."""
        return self.kind != "file"


#: Query keys that label a source for vkit (never sent to FFmpeg, never part of the stored path).
LABEL_KEYS = ("session", "learner")


def parse_source(text: str, *, realtime: bool = False, follow: bool = False,
                 rtsp_transport: str = "tcp") -> SourceSpec:
    """The :class:`SourceSpec` of a SOURCE argument; a missing or non-regular file is a :class:`DataError`."""
    from vkit.core.store.engine import mask_secrets

    if not text or not isinstance(text, str):
        raise ConfigError(f"watch: a SOURCE must be a URL, a device or a file, got {text!r}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in NETWORK_SCHEMES:
        query = parse_qsl(parts.query, keep_blank_values=True)
        labels = {k: v for k, v in query if k in LABEL_KEYS}
        rest = "&".join(f"{k}={v}" if v else k for k, v in query if k not in LABEL_KEYS)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
        options = {"rtsp_transport": rtsp_transport} if scheme in ("rtsp", "rtsps") else {}
        return SourceSpec(url=url, shown=mask_secrets(url), kind="network", options=options, labels=labels)
    if scheme and len(scheme) > 1 and "://" in text:
        raise ConfigError(f"watch: source {mask_secrets(text)!r}: scheme {scheme!r} is not one vkit watch opens; "
                          f"expected one of {list(NETWORK_SCHEMES)}, a device (/dev/video0) or a file")
    if text.startswith("/dev/video"):
        if not device_available():
            raise ConfigError(f"watch: source {text}: this FFmpeg build (PyAV) has no V4L2 input; publish the camera "
                              f"as a network stream (e.g. MPEG-TS over tcp://) or install a PyAV built with it")
        return SourceSpec(url=text, shown=text, kind="device", format="v4l2")
    path = Path(text).expanduser()
    from vkit.core.files import check_regular

    try:
        check_regular(path)
    except FileNotFoundError:
        raise DataError(f"watch: source {text}: no such file (expected a URL, a device or a video file)") from None
    except OSError as err:
        raise DataError(f"watch: source {text}: {err}") from None
    return SourceSpec(url=str(path.resolve()), shown=str(path.resolve()), kind="file", realtime=realtime,
                      follow=follow)


class FollowFile:
    """A growing file read as a stream: at its end, wait for more bytes until ``idle`` seconds pass without any.

    PyAV reads it through :meth:`read`; a streamable format (MPEG-TS, MJPEG) plays while it is written.
    """

    def __init__(self, path: str, stop: threading.Event, idle: float = 5.0, poll: float = 0.05) -> None:
        from vkit.core.files import open_regular

        self.handle = open_regular(path)
        self.stop, self.idle, self.poll = stop, idle, poll

    def read(self, size: int = -1) -> bytes:
        waited = 0.0
        while True:
            data = self.handle.read(size)
            if data or self.stop.is_set() or waited >= self.idle:
                return data
            time.sleep(self.poll)
            waited += self.poll

    def close(self) -> None:
        self.handle.close()


class StreamReader(threading.Thread):
    """Decodes one source into windows on a daemon thread, reconnecting a live source with backoff.

    Args:
        spec: the source.
        state: the stream's :class:`~vkit.workflows.watch.windows.StreamState` (windows, counters, notices).
        stop: set to end the reader.
        open_timeout: seconds to wait for a source to open or deliver a packet before it counts as dropped.
        backoff: first and longest wait between reconnects.
    """

    def __init__(self, spec: SourceSpec, state: Any, stop: threading.Event, *, open_timeout: float = 5.0,
                 backoff: tuple[float, float] = BACKOFF) -> None:
        super().__init__(name=f"vkit-watch-{state.index}", daemon=True)
        self.spec, self.state, self.stop = spec, state, stop
        self.open_timeout, self.backoff = float(open_timeout), backoff

    def run(self) -> None:
        wait = self.backoff[0]
        try:
            while not self.stop.is_set():
                played = self._play_once()
                if not self.spec.live or self.stop.is_set():
                    break
                self.state.disconnected(time.time(), "the stream ended" if played else "cannot open the stream")
                if played:
                    wait = self.backoff[0]
                self.stop.wait(wait)
                wait = min(wait * 2, self.backoff[1])
        except BaseException as err:  # a reader never takes the process down: the stream ends with its reason
            self.state.ended(f"{type(err).__name__}: {err}")
            return
        self.state.ended(None)

    def _open(self) -> Any:
        import av

        kwargs: dict[str, Any] = dict(options=dict(self.spec.options), timeout=(self.open_timeout, self.open_timeout))
        if self.spec.format:
            kwargs["format"] = self.spec.format
        if self.spec.follow:
            return av.open(FollowFile(self.spec.url, self.stop), mode="r", **kwargs)
        return av.open(self.spec.url, mode="r", **kwargs)

    def _play_once(self) -> bool:
        """Open the source and decode it until it ends, fails or ``stop``; whether any frame came."""
        import av

        from vkit.core.store.engine import mask_secrets

        try:
            container = self._open()
        except (av.FFmpegError, OSError) as err:
            if not self.spec.live:
                raise DataError(f"{self.spec.shown}: cannot open: {mask_secrets(str(err))}") from None
            self.state.note_error(mask_secrets(str(err)))
            return False
        played = False
        try:
            if not container.streams.video:
                raise DataError(f"{self.spec.shown}: no video stream")
            stream = container.streams.video[0]
            # frame threads hold frames back (a delay of one frame per thread): live sources decode on slices only
            stream.thread_type = "AUTO" if not (self.spec.live or self.spec.follow or self.spec.realtime) else "SLICE"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 25.0
            began = None
            for packet in container.demux(stream):
                if self.stop.is_set():
                    break
                if packet.is_corrupt:
                    self.state.count("corrupt_packets")
                    continue
                try:
                    frames = packet.decode()
                except (av.InvalidDataError, av.FFmpegError, ValueError):
                    self.state.count("corrupt_packets")
                    continue
                for frame in frames:
                    if not played:
                        played = True
                        self.state.connected(fps, time.time())
                        began = time.monotonic()
                    if self.spec.realtime:
                        due = began + self.state.frames_this_connection / fps
                        delay = due - time.monotonic()
                        if delay > 0 and self.stop.wait(delay):
                            return played
                    self.state.add_frame(frame, time.time(), self.stop)
        except (av.FFmpegError, OSError) as err:  # dropped mid-stream: the reader reconnects
            if not self.spec.live:
                raise DataError(f"{self.spec.shown}: {mask_secrets(str(err))}") from None
            self.state.note_error(mask_secrets(str(err)))
        finally:
            container.close()
        return played


def device_available() -> bool:
    """Whether this FFmpeg build can read V4L2 devices."""
    import av

    return "video4linux2" in av.formats_available or "v4l2" in av.formats_available


__all__ = ["BACKOFF", "FollowFile", "LABEL_KEYS", "NETWORK_SCHEMES", "SourceSpec", "StreamReader", "device_available",
           "parse_source"]
