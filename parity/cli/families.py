"""``lora-parity families``: the zoo's model families, their LoRA components and file layouts."""

from __future__ import annotations

import argparse

from parity.cli.output import EXIT_OK, table

NAME = "families"
HELP = "list the model families, their LoRA components and file layouts"
DESCRIPTION = HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from parity.zoo import FAMILIES

    rows = [["family", "pipeline", "components", "layouts"]]
    for family in FAMILIES.values():
        rows.append([family.name, family.pipeline_class, ",".join(family.lora_components), ",".join(family.layouts)])
    print("\n".join(table(rows, indent="")))
    return EXIT_OK
