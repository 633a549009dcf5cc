"""redline/generated.py: the one way dashboards, alerts and deploy/kubernetes keep generated files."""

from __future__ import annotations

from pathlib import Path

import pytest

from redline import generated


def test_stale_lists_changed_missing_and_leftover_files_and_write_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same, changed, missing, leftover = (tmp_path / n for n in ("a.yml", "b.yml", "c.yml", "z.yml"))
    same.write_text("same\n")
    changed.write_text("old\n")
    leftover.write_text("from a source that is gone\n")
    outputs: generated.Outputs = {same: "same\n", changed: lambda: "new\n", missing: "made\n"}

    def owned() -> list[Path]:
        return sorted(tmp_path.glob("*.yml"))

    assert generated.stale(outputs, owned()) == [changed, missing, leftover]

    def run(*argv: str) -> int:
        return generated.main(
            list(argv), prog="gen", description=None, outputs=lambda: outputs, owned=owned
        )

    assert run("--check") == 1
    assert capsys.readouterr().err.splitlines() == [
        f"stale: {p}" for p in (changed, missing, leftover)
    ]

    assert run() == 0
    assert not leftover.exists()
    assert (changed.read_text(), missing.read_text()) == ("new\n", "made\n")
    assert run("--check") == 0


def test_yaml_keeps_key_order_and_writes_multi_line_strings_as_blocks() -> None:
    shared = {"a": 1}
    text = generated.dump_yaml({"z": "one\ntwo\n", "a": shared, "b": shared})
    assert text == "z: |\n  one\n  two\na:\n  a: 1\nb:\n  a: 1\n"
