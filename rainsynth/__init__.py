"""rainsynth: temporally coherent rain video synthesis (CVPR 2019 rain model, Eqns. 3-4).

    params = rainsynth.sample_params("heavy", seed=0, shape=(7, 256, 448))
    clip = rainsynth.render(clean, params)      # clip.rain, clip.layers["S"], ...

This package never imports torch; the deraining network lives in ``derain``.
"""

__version__ = "0.1.0"

from rainsynth._jit import get_num_threads, set_num_threads  # noqa: E402
from rainsynth.composite import RainClip, invert, render  # noqa: E402
from rainsynth.dataset import DatasetClip, read_dataset  # noqa: E402
from rainsynth.params import RainParams  # noqa: E402
from rainsynth.presets import load_preset, sample_params  # noqa: E402

__all__ = [
    "DatasetClip",
    "RainClip",
    "RainParams",
    "__version__",
    "get_num_threads",
    "invert",
    "load_preset",
    "read_dataset",
    "render",
    "sample_params",
    "set_num_threads",
]
