"""Files generated from the sources and committed: writing them, finding the stale ones.

``dashboards/generated``, ``alerts/generated`` and ``deploy/kubernetes/base``
are rendered from Python and kept in git, so a reviewer reads what Grafana,
Prometheus and ``kubectl apply -k`` will get. Each generator says what it
renders (``outputs``: path → text, or a callable that renders it) and which
existing files are its own (``owned``); this module does the rest, one way
for all three: ``--check`` lists the stale files (rendered differently now,
or owned and no longer rendered) and exits 1, a plain run rewrites them and
removes the leftovers. Also the YAML style the generated files share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

Render = str | Callable[[], str]
Outputs = Mapping[Path, Render]


def _text(render: Render) -> str:
    return render if isinstance(render, str) else render()


def stale(outputs: Outputs, owned: Iterable[Path]) -> list[Path]:
    """Rendered files that differ from the committed ones, then owned files nothing renders."""
    changed = [
        path
        for path, render in outputs.items()
        if not path.exists() or path.read_text(encoding="utf-8") != _text(render)
    ]
    return changed + sorted(set(owned) - set(outputs))


def write(outputs: Outputs, owned: Iterable[Path]) -> list[Path]:
    """Remove the owned files nothing renders any more, write every rendered one."""
    for leftover in set(owned) - set(outputs):
        leftover.unlink()
    for path, render in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_text(render), encoding="utf-8")
    return list(outputs)


def main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str | None,
    outputs: Callable[[], Outputs],
    owned: Callable[[], Iterable[Path]],
) -> int:
    """``prog [--check]``: rewrite the files, or list the stale ones and exit 1 if any."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(outputs(), owned())
        for path in out_of_date:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if out_of_date else 0
    for path in write(outputs(), owned()):
        print(f"wrote {path}")
    return 0


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line strings (PromQL, scripts), no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared dicts would otherwise become &id001 anchors


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(document: Any) -> str:
    """One document as the generated files write it: keys in order, long lines kept."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def dump_yaml_all(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)
