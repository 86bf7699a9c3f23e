"""One job of a build: read a sequence, render its rain, write its previews and clip folder."""

from __future__ import annotations

from pathlib import Path

import rainsynth
from rainsynth import browser, dataset
from rainsynth.build.plan import BuildOptions, Job, open_build_source
from rainsynth.errors import SourceError
from rainsynth.presets import sample_params


def build_clip(job: Job, options: BuildOptions, out: str) -> dict:
    """Read, render and write one clip (runs in a worker). Returns {"built": its clip.json}, or
    {"skipped": a skip record}.

    The clip's browser previews (:mod:`rainsynth.browser`) are written first, then its folder,
    atomically (:func:`rainsynth.dataset.write_stored_clip`). A SourceError (unreadable
    sequence) is returned as {"skipped": ...} when the job skips errors, else raised with the
    clip named. OSError (e.g. a full disk) propagates; the partial clip is removed first.
    """
    rainsynth.set_num_threads(1)  # workers are processes (or Dask threads): one thread each
    try:
        sequence = open_build_source(options).read(job.ref)
    except SourceError as error:
        if job.skip_errors:
            return {"skipped": {**job.describe(), "error": str(error)}}
        raise SourceError(
            f"cannot build clip {job.split}/{job.preset.name}/{job.name}: {error}; fix or "
            "remove the file, or pass --on-error skip to record the sequence as skipped"
        ) from None
    frames = sequence.frames
    params = sample_params(job.preset, seed=job.seed, shape=frames.shape[:3], clip=job.index)
    clip = rainsynth.render(frames, params)
    rain, layers = dataset.to_uint8(clip.rain), dataset.encode_layers(clip.layers)
    info = {
        **job.describe(),
        "build": job.build,
        "seed": job.seed,
        "files": list(sequence.files),
        "shape": list(frames.shape[:3]),
        "flow": sequence.flow is not None,
    }
    browser.write_previews(
        Path(out), job.index, rain=rain, clean=frames, layers=layers, flow=sequence.flow
    )
    dataset.write_stored_clip(
        job.folder(Path(out)),
        rain=rain,
        clean=frames,
        layers=layers,
        params=params,
        flow=sequence.flow,
        info=info,
    )
    return {"built": info}
