"""The ``rainsynth`` command line: one console script, one subcommand per job.

Subcommands are imported only when run, so ``rainsynth build --help`` never loads torch. Every
subcommand is a :class:`Command`: it takes ``-h``, and reports errors as one line with the
documented exit code. Every option can also be set by an environment variable
``RAINSYNTH_<COMMAND>_<OPTION>`` (e.g. ``RAINSYNTH_DERAIN_DEVICE=cpu``).
"""

from __future__ import annotations

import importlib

import click

from rainsynth.errors import RainsynthError

# subcommand name -> "module:attribute" of its click command
COMMANDS = {
    "preview": "rainsynth.preview:preview_command",
    "build": "rainsynth.build_cli:build_command",
    "card": "rainsynth.build_cli:card_command",
    "export": "rainsynth.export:export_command",
    "train": "derain.train:train_command",
    "test": "derain.evaluate:test_command",
    "derain": "derain.inference:derain_command",
    "pretrain-flow": "derain.train:pretrain_flow_command",
}

_HELP = {
    "preview": "Render rain over a clip: contact sheet PNG and side-by-side MP4.",
    "build": "Build a paired rain/clean video dataset.",
    "card": "Write a built dataset's card and browser page (index.html) again.",
    "export": "Export a built dataset to the BasicSR / mmagic paired video layout.",
    "train": "Train the deraining network from a TOML config.",
    "test": "Score a deraining model on a built dataset (Y PSNR/SSIM, temporal consistency).",
    "derain": "Remove rain from a video file or a folder of frames.",
    "pretrain-flow": "Pretrain the flow network of MF-AlignNet.",
}

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


class Failure(click.ClickException):
    """An error shown as ``Error: <message>`` that exits with the given code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Command(click.Command):
    """A rainsynth subcommand: ``-h`` shows its help; bad usage or input values
    (RainsynthError) exit 2, failures while running (RunError, OSError) exit 1, each with a
    one-line message."""

    def __init__(self, *args, **kwargs):
        kwargs["context_settings"] = {**HELP_OPTIONS, **kwargs.get("context_settings", {})}
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RainsynthError as exc:
            raise Failure(str(exc), exc.exit_code) from None
        except OSError as exc:
            raise Failure(str(exc), 1) from None


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except RainsynthError as exc:  # a missing extra: one line naming what to install
            raise Failure(str(exc), exc.exit_code) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in COMMANDS])


_EPILOG = """\b
Exit codes:
  0  done
  1  failed while running (non-finite gradient, unusable checkpoint contents,
     a read or write that failed)
  2  bad usage or a bad input value (unknown option, value out of range,
     missing or malformed input, an output that would replace an input)

\b
Options can also come from the environment: RAINSYNTH_<COMMAND>_<OPTION>,
e.g. RAINSYNTH_DERAIN_DEVICE=cpu; `rainsynth build` reads its --root from
RAINSYNTH_ROOT too.
"""


@click.group(
    cls=LazyGroup,
    epilog=_EPILOG,
    context_settings={**HELP_OPTIONS, "auto_envvar_prefix": "RAINSYNTH"},
)
@click.version_option(package_name="rainsynth")
def main() -> None:
    """rainsynth: render realistic, temporally coherent rain over clean video, build paired
    rain/clean datasets, and train, test and run a video deraining network.

    \b
    Quick start (no download needed):
      rainsynth preview --preset heavy --seed 0 -o out/preview
      rainsynth build --out out/data          # built-in source, light+heavy
      rainsynth train --config derain/configs/small.toml
      rainsynth derain rainy.mp4 -o clean.mp4
    """
