"""Video files (mp4, mkv, avi, mov, webm) decoded with imageio-ffmpeg and cut into windows.

Listing reads the container's packet table (a stream copy to ffmpeg's framecrc muxer: demuxing
only, no decoding), which gives the frame count and every frame's presentation time. Reading a
window decodes on from the previous window when it lies at most MAX_SKIP frames ahead (so a
file's windows read in order are decoded once), and otherwise seeks to midway between its first
frame's time and the frame before (ffmpeg input seeking decodes from the previous keyframe and
drops the frames before that time, so it lands on that exact frame, variable frame rates and
non-zero start times included). Containers without usable presentation times (AVI) are decoded
forward from the start instead. A window's frames therefore depend only on the file and the
window, not on what was read before.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import imageio_ffmpeg
import numpy as np

from rainsynth.errors import SourceError
from rainsynth.fileio import VIDEO_EXTENSIONS
from rainsynth.sources.base import (
    Options,
    Sequence,
    SequenceRef,
    fit_frame,
    natural_key,
    window_starts,
)

NO_TIMESTAMP = -(2**63)
DISCARD = 0x4
"""Packet flag of frames an edit list hides (the decoder drops them)."""
MAX_SKIP = 64
"""Decode through at most this many frames to reach a window before seeking to it instead."""


class VideoSource:
    """Windows of `frames` frames, `stride` apart, from a video file or a folder of them."""

    name = "videos"

    def __init__(self, root: str, options: Options, skip_unreadable: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.options = options
        self.clips = VideoClips(self.name, _video_files(self.root), options, skip_unreadable)

    @property
    def unreadable(self) -> dict[str, str]:
        """Path -> error of the videos left out because their header cannot be read."""
        return self.clips.unreadable

    def sequences(self) -> list[SequenceRef]:
        """Every window of every video, by file name then start frame."""
        refs = self.clips.sequences()
        if not refs:
            raise SourceError(
                f"no video under {self.root} has {self.options.frames} frames or more"
            )
        return refs

    def read(self, ref: SequenceRef) -> Sequence:
        """Decode one window as (T, H, W, 3) uint8 RGB."""
        return self.clips.read(ref)

    def describe(self) -> dict:
        """Source name, root, options and the video files."""
        return {
            "source": self.name,
            "root": self.root,
            "files": list(self.clips.paths),
            **self.options.to_dict(),
        }


class VideoClips:
    """Windows of a fixed list of video files, named by `name -> path` (shared with builtin).

    Keys are "NAME@START" (START the 0-based first frame, 4 digits); the group is NAME. With
    skip_unreadable, a video whose header cannot be read has no windows and is recorded in
    ``unreadable`` (path -> error) instead of raising SourceError.
    """

    def __init__(
        self, source: str, paths: dict[str, str], options: Options, skip_unreadable: bool = False
    ) -> None:
        self.source = source
        self.paths = paths
        self.options = options
        self.skip_unreadable = skip_unreadable
        self.unreadable: dict[str, str] = {}
        self._probes: dict[str, Probe] = {}
        self._decoder: _Decoder | None = None

    def __getstate__(self) -> dict:
        """Pickle without the open decoder (a running ffmpeg process)."""
        return {**self.__dict__, "_decoder": None}

    def probe(self, name: str) -> Probe:
        """Frame count and times of one video, cached."""
        if name not in self._probes:
            self._probes[name] = probe(self.paths[name])
        return self._probes[name]

    def sequences(self) -> list[SequenceRef]:
        """Every window of every video, by name then start frame."""
        refs = []
        for name in self.paths:
            try:
                count = self.probe(name).frames
            except SourceError as error:
                if not self.skip_unreadable:
                    raise
                self.unreadable[self.paths[name]] = str(error)
                continue
            starts = window_starts(count, self.options.frames, self.options.step)
            refs += [
                SequenceRef(self.source, f"{name}@{start:04d}", name, None) for start in starts
            ]
        return refs

    def read(self, ref: SequenceRef) -> Sequence:
        """Decode one window as (T, H, W, 3) uint8 RGB, resized to the options' size."""
        name, _, start = ref.key.rpartition("@")
        if name not in self.paths or not start.isdigit():
            raise SourceError(f"{ref.key!r} is not a clip of the {self.source} source")
        path = self.paths[name]
        if self._decoder is None or self._decoder.path != path:
            self.close()
            self._decoder = _Decoder(path, self.probe(name))
        frames = self._decoder.read(int(start), self.options.frames)
        fitted = [fit_frame(frame, self.options.size, self.options.resize) for frame in frames]
        return Sequence(ref, np.stack(fitted), None, (path,))

    def close(self) -> None:
        """Stop the open decoder, if any."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None


@dataclass(frozen=True)
class Probe:
    """A video's frame count and its frames' presentation times in seconds (None when the
    container has none, as in AVI), relative to the file's start time like ffmpeg's -ss."""

    frames: int
    times: tuple[float, ...] | None


def probe(path: str) -> Probe:
    """Count the first video stream's frames from its packet table, without decoding."""
    if not os.path.isfile(path):
        raise SourceError(f"video {path} does not exist")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise SourceError(f"cannot read video {path}: {_reason(result.stderr)}")
    base = re.search(r"^#tb 0: (\d+)/(\d+)", result.stdout, re.MULTILINE)
    stamps = []
    for line in result.stdout.splitlines():
        if line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(",")]
        flags = int(fields[6][2:], 16) if len(fields) > 6 and fields[6].startswith("F=") else 1
        if len(fields) >= 6 and not flags & DISCARD:
            stamps.append(int(fields[2]))
    if not stamps or base is None:
        raise SourceError(f"video {path} has no video frames")
    if NO_TIMESTAMP in stamps or len(set(stamps)) != len(stamps):
        return Probe(len(stamps), None)
    unit = int(base.group(1)) / int(base.group(2))
    return Probe(len(stamps), tuple(stamp * unit for stamp in sorted(stamps)))


class _Decoder:
    """A running ffmpeg decode of one file that serves windows in any order.

    A window at or shortly after the decoder's position (or inside the last window) is decoded
    onward; any other seeks to its first frame's time, or, without frame times, restarts from
    the first frame.
    """

    def __init__(self, path: str, info: Probe) -> None:
        self.path = path
        self.info = info
        self._frames = None
        self._next = 0
        self._size = (0, 0)
        self._kept: dict[int, np.ndarray] = {}

    def read(self, start: int, count: int) -> list[np.ndarray]:
        """Frames start .. start+count-1 as (h, w, 3) uint8 arrays."""
        if self._frames is None or not self._reachable(start):
            self._open(start if self.info.times is not None else 0)
        frames = [self._kept[i] for i in range(start, min(self._next, start + count))]
        while self._next < start + count:
            raw = self._pull(start, count)
            if self._next >= start:
                w, h = self._size
                frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3))
            self._next += 1
        self._kept = dict(zip(range(start, start + count), frames, strict=True))
        return frames

    def _reachable(self, start: int) -> bool:
        """True when the running decoder holds or will reach frame `start` soon enough."""
        skip = start - self._next
        return start in self._kept or 0 <= skip and (self.info.times is None or skip <= MAX_SKIP)

    def _pull(self, start: int, count: int) -> bytes:
        """The next raw frame; SourceError naming the file when the video ends early or fails."""
        try:
            raw = next(self._frames)
        except StopIteration:
            self.close()
            raise SourceError(
                f"video {self.path} ended at frame {self._next}, before the end of the window "
                f"of {count} frames starting at frame {start} (truncated file?)"
            ) from None
        except (RuntimeError, OSError) as error:
            self.close()
            raise SourceError(f"cannot decode video {self.path}: {_reason(error)}") from error
        if len(raw) != self._size[0] * self._size[1] * 3:
            self.close()
            raise SourceError(f"video {self.path} gave a short frame at frame {self._next}")
        return raw

    def _open(self, start: int) -> None:
        """Start ffmpeg at frame `start`: seek to midway between it and the frame before."""
        self.close()
        seek = []
        if start > 0:
            times = self.info.times
            seek = ["-ss", f"{(times[start - 1] + times[start]) / 2:.6f}"]
        try:
            self._frames = imageio_ffmpeg.read_frames(
                self.path,
                pix_fmt="rgb24",
                input_params=seek,
                output_params=["-fps_mode", "passthrough"],
            )
            self._size = tuple(next(self._frames)["size"])
        except (RuntimeError, OSError, StopIteration) as error:
            self.close()
            raise SourceError(f"cannot read video {self.path}: {_reason(error)}") from error
        self._next = start
        self._kept = {}

    def close(self) -> None:
        """Stop ffmpeg."""
        if self._frames is not None:
            self._frames.close()
            self._frames = None


def _video_files(root: str) -> dict[str, str]:
    """`name -> path` of a video file, or of the videos under a folder (names relative to it)."""
    if os.path.isfile(root):
        return {os.path.basename(root): root}
    if not os.path.isdir(root):
        raise SourceError(
            f"video root {root} does not exist; expected a video file or a folder of them "
            f"({', '.join(VIDEO_EXTENSIONS)})"
        )
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort(key=natural_key)
        for name in sorted(names, key=natural_key):
            if name.lower().endswith(VIDEO_EXTENSIONS):
                path = os.path.join(folder, name)
                files[os.path.relpath(path, root).replace(os.sep, "/")] = path
    if not files:
        found = sorted(os.listdir(root))[:10]
        raise SourceError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}; "
            f"found: {', '.join(found) or 'an empty folder'}"
        )
    return files


def _reason(error: BaseException | str) -> str:
    """The telling lines of an ffmpeg failure: its first log message and its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    logged = [re.sub(r"^\[[^\]]*\]\s*", "", line) for line in lines if line.startswith("[")]
    telling = list(dict.fromkeys(logged[:1] + lines[-1:]))
    return "; ".join(telling) or type(error).__name__
