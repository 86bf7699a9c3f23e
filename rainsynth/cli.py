"""The ``rainsynth`` command line: one console script, one subcommand per job.

Subcommands are imported only when run, so ``rainsynth build --help`` never loads torch.
"""

from __future__ import annotations

import importlib

import click

from rainsynth.errors import RainsynthError

# subcommand name -> "module:attribute" of its click command
COMMANDS = {
    "preview": "rainsynth.preview:preview_command",
    "build": "rainsynth.build:build_command",
    "export": "rainsynth.export:export_command",
    "train": "derain.train:train_command",
    "test": "derain.evaluate:test_command",
    "derain": "derain.inference:derain_command",
    "pretrain-flow": "derain.flow_pretrain:pretrain_flow_command",
}

_HELP = {
    "preview": "Render rain over a clip: contact sheet PNG and side-by-side MP4.",
    "build": "Build a paired rain/clean video dataset.",
    "export": "Export a built dataset to the BasicSR / mmagic paired video layout.",
    "train": "Train the deraining network from a TOML config.",
    "test": "Score a deraining model on a built dataset (Y PSNR/SSIM, temporal consistency).",
    "derain": "Remove rain from a video file or a folder of frames.",
    "pretrain-flow": "Pretrain the flow network of MF-AlignNet.",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; bad input (``RainsynthError``) becomes a clear message and exit 2."""
        try:
            return super().invoke(ctx)
        except RainsynthError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
