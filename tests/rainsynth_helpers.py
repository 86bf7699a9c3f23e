"""Shared pieces of the build tests: the small build's options and running `rainsynth build`."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

RAINSYNTH = (
    [shutil.which("rainsynth")]
    if shutil.which("rainsynth")
    else [sys.executable, "-c", "from rainsynth.cli import main; main()"]
)
"""The console script, or the same entry point run by this Python."""
SMALL = [
    "--count", "5", "--split", "4/2", "--frames", "5", "--size", "96x160", "--seed", "3",
]  # fmt: skip
"""A small built-in build: 6 sequences (some synthetic with exact flow, some video windows),
light and heavy: 12 clips of 5 frames, about 0.1 s each."""
CLIPS = 12


def rainsynth_build(*args: str, out: Path, wait: bool = True, check: bool = True, **kwargs):
    """Run `rainsynth build ... --out OUT` in a new process (Popen when not wait)."""
    command = [*RAINSYNTH, "build", *args, "--out", str(out)]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def clip_folders(root: Path) -> list[Path]:
    """The finished clip folders under a dataset root (temporary ones left out)."""
    return sorted(p for p in root.glob("*/*/*") if p.is_dir() and not p.name.startswith("."))
