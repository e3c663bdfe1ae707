"""``python -m study.data`` as a user runs it: phantoms, checks, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_user_error, run_cli


def test_phantom_then_check(tmp_path: Path) -> None:
    out = tmp_path / "ct"
    made = run_cli(
        "study.data",
        "phantom",
        "--kind",
        "ct",
        "--out",
        str(out),
        "--size",
        "32",
        "--n-train",
        "4",
        "--n-val",
        "2",
        "--n-test",
        "2",
        "--n-unlabeled",
        "2",
    )
    assert made.returncode == 0, made.stderr
    checked = run_cli("study.data", "check", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "4" in checked.stdout and "ct" in checked.stdout.lower()


def test_phantom_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_cli("study.data", "phantom", "--kind", "mri", "--out", str(out), "--size", "32")
    assert_user_error(result, str(out))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["phantom", "--kind", "pet"], "--kind"),
        (["phantom", "--kind", "mri", "--size", "20"], "size"),
        (["check", "/nonexistent/data"], "/nonexistent/data"),
        (
            [
                "import-nifti",
                "--images",
                "/nope",
                "--labels",
                "/nope",
                "--classes",
                "a=1",
                "--modality",
                "mri",
                "--out",
                "/tmp/x",
            ],
            "/nope",
        ),
    ],
)
def test_bad_input_is_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    assert_user_error(run_cli("study.data", *args, cwd=tmp_path), fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_scan_file_is_named(tmp_path: Path) -> None:
    out = tmp_path / "mri"
    assert (
        run_cli(
            "study.data",
            "phantom",
            "--kind",
            "mri",
            "--out",
            str(out),
            "--size",
            "32",
            "--n-train",
            "2",
            "--n-val",
            "1",
            "--n-test",
            "1",
            "--n-unlabeled",
            "1",
            "--n-slices",
            "4",
        ).returncode
        == 0
    )
    victim = sorted((out / "scans").iterdir())[0]
    victim.write_bytes(b"not an h5 file")
    assert_user_error(run_cli("study.data", "check", str(out)), victim.name)


@pytest.mark.parametrize(
    "command, default, example",
    [
        ("phantom", "(default: 2)", "python -m study.data phantom --kind mri --size 256"),
        ("import-nifti", "(default: 400/50,1800/400,500/50)", "--modality ct"),
        ("check", None, "python -m study.data check /data/skm-tea"),
    ],
)
def test_every_subcommand_shows_its_defaults_and_examples(command: str, default: str | None, example: str) -> None:
    """``python -m study.data <command> --help`` (issue 27, Found 7)."""
    shown = run_cli("study.data", command, "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "examples:" in shown.stdout and example in text
    assert default is None or default in text
    assert "(default: None)" not in text
