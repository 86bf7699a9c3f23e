"""Weights and training state on disk: safe to load, atomic to write, strict to check.

Weights are safetensors with string metadata (:func:`save_weights`); a training state is tensors
and plain containers, read with ``torch.load(weights_only=True)``, never an arbitrary pickle.
Every write is atomic (:func:`atomic_write`). A malformed or mismatched file raises
CheckpointError naming the file and what does not match, checked before anything is allocated
for it. A run folder's ``checkpoints/`` holds ``iter_NNNNNNNN.safetensors`` + ``.state.pt``
pairs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rainsynth
from derain.model import ModelConfig, build_model
from rainsynth.errors import RainsynthError, RunError
from rainsynth.fileio import atomic_file
from rainsynth.outputs import follow_umask

MODEL_FORMAT = "rainsynth-derain"
FLOW_FORMAT = "rainsynth-flownet"
BUNDLED_WEIGHTS = "weights/model.safetensors"
_CHECKPOINT = re.compile(r"iter_(\d{8})\.safetensors$")
MAX_TENSORS = 10_000
"""Most tensors a weights file may hold (the paper-size network has about 700)."""


class CheckpointError(RunError):
    """A weights or state file is malformed or does not match the network."""


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temp_path)``, fsync, then rename to ``path``: all or nothing
    (rainsynth.fileio.atomic_file; the temporary name keeps the suffix a video writer reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as temp:
        write(str(temp))
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        follow_umask(temp)
    return path


def save_weights(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any],
    *,
    iteration: int = 0,
    kind: str = MODEL_FORMAT,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a state dict as safetensors with string metadata: ``format`` (``kind``: MODEL_FORMAT
    for the whole network, FLOW_FORMAT for a pretrained flow network), ``version``
    (rainsynth's), ``model_config`` (ModelConfig JSON: the file alone rebuilds its network),
    ``iteration`` and ``extra``'s entries (JSON-encoded unless strings)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    metadata = {
        "format": kind,
        "version": rainsynth.__version__,
        "model_config": json.dumps(dict(model_config), sort_keys=True),
        "iteration": str(int(iteration)),
    }
    for key, value in (extra or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return atomic_write(path, lambda temp: save_file(tensors, temp, metadata=metadata))


def read_weights(
    path: str | Path, kind: str = MODEL_FORMAT
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file written by :func:`save_weights`: (tensors on CPU, metadata).
    RainsynthError when the file is missing; CheckpointError when it is not safetensors, lacks
    the metadata of ``kind`` or its header asks for more than MAX_TENSORS tensors or more bytes
    than the file holds."""
    path = Path(path)
    if not path.is_file():
        raise RainsynthError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            keys = list(handle.keys())
            if len(keys) > MAX_TENSORS:
                raise CheckpointError(
                    f"weights file {path} lists {len(keys)} tensors; "
                    f"at most {MAX_TENSORS} are allowed"
                )
            slices = [handle.get_slice(key) for key in keys]
            total = sum(math.prod(t.get_shape()) * _ITEMSIZE.get(t.get_dtype(), 8) for t in slices)
            size = path.stat().st_size
            if total > size:
                raise CheckpointError(
                    f"weights file {path} lists {total} bytes of tensors "
                    f"but holds only {size} bytes"
                )
            tensors = {key: handle.get_tensor(key) for key in keys}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error type for every malformation
        raise CheckpointError(
            f"weights file {path} is not a valid safetensors file: {exc}"
        ) from None
    found = metadata.get("format")
    if found != kind:
        raise CheckpointError(
            f"weights file {path} has format {found!r} in its metadata, expected {kind!r}"
            + (" (a pretrained flow network?)" if found == FLOW_FORMAT else "")
        )
    for key in ("model_config", "iteration"):
        if key not in metadata:
            raise CheckpointError(f"weights file {path} lacks the {key!r} metadata entry")
    try:
        json.loads(metadata["model_config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"weights file {path}: model_config is not JSON ({exc})") from None
    return tensors, metadata


_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
             "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


def model_config_of(metadata: Mapping[str, str], path: str | Path) -> ModelConfig:
    """The ModelConfig stored in a weights file's metadata."""
    try:
        return ModelConfig.from_dict(json.loads(metadata["model_config"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"weights file {path}: its model_config is not usable: {exc}"
        ) from None


def check_config(stored: Mapping[str, Any], expected: Mapping[str, Any], path: str | Path) -> None:
    """Raise CheckpointError listing every model-config field where file and expectation differ."""
    diffs = [
        f"{k}: file {stored.get(k, '<absent>')!r}, expected {expected.get(k, '<absent>')!r}"
        for k in sorted(set(stored) | set(expected))
        if stored.get(k, "<absent>") != expected.get(k, "<absent>")
    ]
    if diffs:
        raise CheckpointError(
            f"weights file {path} holds a different model config: " + "; ".join(diffs)
        )


def load_state_dict(
    module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], path: Any
) -> None:
    """Strictly load ``tensors`` into ``module`` (:func:`check_tensors` first)."""
    own = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    check_tensors(own, tensors, path)
    module.load_state_dict(dict(tensors), strict=True)


def check_tensors(
    own: Mapping[str, tuple[int, ...]], tensors: Mapping[str, torch.Tensor], path: Any
) -> None:
    """CheckpointError unless ``tensors`` are finite and have exactly the names and shapes of
    ``own`` (the network's state dict: name -> shape), naming the first few of each problem."""
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [
        f"{k}: file {tuple(tensors[k].shape)} vs network {own[k]}"
        for k in sorted(set(own) & set(tensors))
        if tuple(tensors[k].shape) != own[k]
    ]
    problems = [
        f"{what} ({len(items)}): {', '.join(items[:5])}{', ...' if len(items) > 5 else ''}"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if items
    ]
    if problems:
        raise CheckpointError(
            f"weights file {path} does not match the network: " + "; ".join(problems)
        )
    floats = {k: v for k, v in tensors.items() if v.is_floating_point()}
    sums = [v.sum(dtype=torch.float64) for v in floats.values()]  # NaN and inf survive a sum
    if sums and not torch.isfinite(torch.stack(sums)).all():
        nonfinite = [k for k, v in floats.items() if not torch.isfinite(v).all()]
        raise CheckpointError(
            f"weights file {path} holds NaN or inf in {len(nonfinite)} tensor(s): "
            f"{', '.join(nonfinite[:5])}; it cannot give a usable output"
        )


@functools.lru_cache(maxsize=8)
def network_shapes(model_config: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the state dict of the network a ModelConfig JSON describes."""
    with torch.device("meta"):
        network = build_model(ModelConfig.from_dict(json.loads(model_config)))
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def load_model(
    path: str | Path, device: str | torch.device = "cpu", expected_config: ModelConfig | None = None
) -> tuple[torch.nn.Module, dict[str, str]]:
    """Build the network a weights file describes and load it (eval mode): (model, metadata).
    The tensors are checked against the network on the "meta" device, which allocates nothing.
    expected_config: a ModelConfig the file must hold (CheckpointError listing differences)."""
    tensors, metadata = read_weights(path)
    config = model_config_of(metadata, path)
    if expected_config is not None:
        check_config(config.to_dict(), expected_config.to_dict(), path)
    check_tensors(network_shapes(json.dumps(config.to_dict(), sort_keys=True)), tensors, path)
    model = build_model(config)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), metadata


def resolve_weights(weights: str | Path | None) -> Path:
    """The weights to use: ``weights`` if given, else the bundled derain/weights/model.safetensors."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise RainsynthError(f"weights file {path} does not exist")
        return path
    bundled = resources.files("derain").joinpath(BUNDLED_WEIGHTS)
    if not bundled.is_file():
        raise CheckpointError(
            f"no bundled weights at {bundled}; pass --weights FILE.safetensors "
            "(e.g. the model.safetensors of a run of `rainsynth train`)"
        )
    return Path(str(bundled))


def rng_state() -> dict:
    """Python, numpy and torch (and CUDA) RNG states as tensors and plain containers."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write a training state (tensors and plain containers only) atomically."""
    return atomic_write(path, lambda temp: torch.save(dict(state), temp))


def load_state(path: str | Path) -> dict:
    """Read a training state with ``weights_only=True``; CheckpointError when unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"training state {path} does not exist") from None
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"training state {path} is malformed or unsafe: {exc}") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise CheckpointError(f"training state {path} is not a rainsynth training state")
    return state


def checkpoint_paths(folder: str | Path, iteration: int) -> tuple[Path, Path]:
    """(weights, state) paths of the checkpoint taken after ``iteration`` iterations."""
    stem = Path(folder) / f"iter_{iteration:08d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".state.pt")


def list_checkpoints(folder: str | Path) -> list[int]:
    """Iterations of the complete (weights and state present) checkpoints, ascending."""
    folder = Path(folder)
    matches = (_CHECKPOINT.fullmatch(p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    found = [int(match.group(1)) for match in matches if match]
    return sorted(i for i in found if checkpoint_paths(folder, i)[1].is_file())


def latest_checkpoint(folder: str | Path) -> int | None:
    """Iteration of the newest complete checkpoint in ``folder``, or None."""
    return [None, *list_checkpoints(folder)][-1]


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints."""
    for iteration in list_checkpoints(folder)[:-keep]:
        for path in checkpoint_paths(folder, iteration):
            path.unlink(missing_ok=True)


def save_checkpoint(
    folder: str | Path,
    iteration: int,
    module: torch.nn.Module,
    model_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    elapsed: float,
    keep: int,
    kind: str = MODEL_FORMAT,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write the checkpoint of ``iteration`` (weights, then optimizer, scheduler, RNG states and
    elapsed seconds) and prune all but the ``keep`` newest."""
    weights, state = checkpoint_paths(folder, iteration)
    save_weights(
        weights, module.state_dict(), model_config, iteration=iteration, kind=kind, extra=extra
    )
    optim = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    save_state(state, {"iteration": iteration, "elapsed": elapsed, **optim, "rng": rng_state()})
    prune_checkpoints(folder, keep)


def resume_checkpoint(
    folder: str | Path,
    module: torch.nn.Module,
    model_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    kind: str = MODEL_FORMAT,
) -> tuple[int, float]:
    """Load the newest complete checkpoint of ``folder`` into module, optimizer, scheduler and
    the RNGs; returns (iteration, elapsed seconds). The stored model config must equal
    ``model_config``."""
    iteration = latest_checkpoint(folder)
    if iteration is None:
        raise CheckpointError(f"--resume: no complete checkpoint in {folder}")
    weights, state_path = checkpoint_paths(folder, iteration)
    tensors, metadata = read_weights(weights, kind=kind)
    check_config(json.loads(metadata["model_config"]), dict(model_config), weights)
    load_state_dict(module, tensors, weights)
    state = load_state(state_path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"training state {state_path} does not fit this run: {exc}") from None
    return int(state["iteration"]), float(state["elapsed"])
