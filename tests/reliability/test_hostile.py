"""Hostile and broken input to ``python -m study.run`` (issue 7).

Every input in the corpus must be refused the way a person can act on: exit status 2, one line on
stderr naming the field or file at fault, no traceback, nothing written anywhere (each is caught
before the study starts), a Python tag never run, and the earlier study of the same name untouched.

The inputs: spec files in ``corpus/specs/``, manifests in ``corpus/data/``, the argument lists
below, and mutations of a small real data set (``_break``), each described where it is made.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import assert_user_error, run_cli
from tests.data.conftest import write_skmtea
from tests.run.conftest import TINY_SCALE, write_spec

CORPUS = Path(__file__).parent / "corpus"
NOBODY = "~nosuchuser-hostile"  # a home folder that cannot be found


@dataclass(frozen=True)
class Case:
    """One hostile input. In ``args``, ``fields`` and ``fragments``, ``{arena}``, ``{case}`` and
    ``{data}`` stand for the module's folder, this case's folder and its broken data set."""

    id: str
    fragments: tuple[str, ...]
    spec: str | None = None  # a file of corpus/specs, or a path; None: a valid tiny spec
    args: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)  # spec fields of the valid tiny spec
    data: str | None = None  # a mutation of the tiny MRI data set (_break), given as datasets
    make: str | None = None  # something else the case needs in {case} (_make)
    markers: tuple[str, ...] = ()  # files a Python tag would create in {arena} if it ran
    needs_non_root: bool = False  # permission bits do not stop root
    absent: str | None = None  # a module the case needs missing (a database driver)


YAML = [
    Case("yaml/unclosed-bracket", ("unclosed_bracket.yaml line 4: not valid YAML",), "unclosed_bracket.yaml"),
    Case("yaml/unclosed-quote", ("unclosed_quote.yaml line 3: not valid YAML",), "unclosed_quote.yaml"),
    Case("yaml/tab-indent", ("tab_indent.yaml line 3: not valid YAML", "'\\t'"), "tab_indent.yaml"),
    Case("yaml/duplicate-key", ("duplicate_key.yaml line 5", "'label_fractions' is given twice"), "duplicate_key.yaml"),
    Case("yaml/list-not-mapping", ("list_not_mapping.yaml: a spec is a mapping", "got list"), "list_not_mapping.yaml"),
    Case("yaml/scalar", ("scalar.yaml: a spec is a mapping", "got str"), "scalar.yaml"),
    Case("yaml/empty-file", ("empty.yaml: the file is empty",), "empty.yaml"),
    Case("yaml/comments-only", ("comments_only.yaml: the file is empty",), "comments_only.yaml"),
    Case("yaml/nul-bytes", ("binary_nul.yaml: not valid YAML", "#x0000"), "binary_nul.yaml"),
    Case("yaml/binary-junk", ("binary_junk.yaml: cannot read", "utf-8"), "binary_junk.yaml"),
    Case("yaml/deep-nesting", ("deep_nesting.yaml: nested too deeply",), "deep_nesting.yaml"),
    Case("yaml/alias-bomb", ("alias_bomb.yaml: label_fractions.0: Input should be a valid number",), "alias_bomb.yaml"),
    Case(
        "yaml/huge-file", ("huge.yaml: 2,097,152 bytes is too large for a spec",), "{case}/huge.yaml", make="huge spec"
    ),
    Case("yaml/a-folder", ("{arena}: not a spec file",), "{arena}"),
    Case("yaml/a-device", ("/dev/zero: not a spec file",), "/dev/zero"),
]

PYTHON_TAGS = [
    Case(
        "tag/os-system",
        ("tag_os_system.yaml line 1: not valid YAML", "python/object/apply:os.system"),
        "tag_os_system.yaml",
        markers=("pwned-by-yaml",),
    ),
    Case(
        "tag/popen-nested",
        ("tag_popen_nested.yaml line 4: not valid YAML", "subprocess.Popen"),
        "tag_popen_nested.yaml",
        markers=("pwned-by-popen",),
    ),
    Case(
        "tag/python-name",
        ("tag_python_name.yaml line 3: not valid YAML", "python/name:os.system"),
        "tag_python_name.yaml",
    ),
    Case(
        "tag/in-set",
        ("--set 'scale=!!python/object/apply:os.system", "the value is not valid YAML"),
        args=("--set", 'scale=!!python/object/apply:os.system ["touch pwned-by-set"]'),
        markers=("pwned-by-set",),
    ),
]

SIZE = [
    Case("size/grid-500k", ("the grid has 500,000 trials, more than 20,000",), "grid_500k.yaml"),
    Case("size/grid-every-axis", ("the grid has 30,720,000,000 trials",), "grid_every_axis.yaml"),
    Case(
        "size/grid-by-set",
        ("the grid has 256,000 trials",),
        args=(
            "--set",
            f"pretraining.patch_size=[{', '.join(map(str, range(1, 257)))}]",
            "--set",
            f"finetuning.lr=[{', '.join(f'{i / 1e4:g}' for i in range(1, 501))}]",
        ),
    ),
    Case(
        "size/sampled-billion",
        ("search.num_samples", "less than or equal to 20000", "1000000000"),
        "sampled_billion.yaml",
    ),
]

NAMES = [
    Case(
        "name/dotdot",
        ("name_dotdot.yaml: name: a study name is a folder name, not a path", "'../escaped'"),
        "name_dotdot.yaml",
    ),
    Case("name/absolute", ("name: a study name is a folder name", "'/tmp/escaped'"), "name_absolute.yaml"),
    Case("name/separator", ("name: a study name is a folder name", "'nested/escaped'"), "name_separator.yaml"),
    Case("name/backslash", ("name: a study name is a folder name",), "name_backslash.yaml"),
    Case("name/newline", ("name: a study name is a folder name", "'tiny\\n'"), "name_newline.yaml"),
    Case(
        "name/set-dotdot",
        ("name: a study name is a folder name", "'../../escaped'"),
        args=("--set", "name=../../escaped"),
    ),
    Case(
        "name/set-absolute", ("name: a study name", "'/etc/cron.d/escaped'"), args=("--set", "name=/etc/cron.d/escaped")
    ),
    Case(
        "name/set-separator", ("name: a study name", "'tiny/../../escaped'"), args=("--set", "name=tiny/../../escaped")
    ),
    Case("name/set-dots", ("name: a study name", "'..'"), args=("--set", "name=..")),
    Case("name/set-too-long", ("name: a study name", "up to 100"), args=("--set", "name=" + "n" * 300)),
]

STORAGE = [
    Case("storage/dev-null", ("storage: /dev/null is a file, not a folder",), args=("--set", "storage=/dev/null")),
    Case(
        "storage/under-a-file",
        ("storage: {arena}/notes.txt is a file",),
        args=("--set", "storage={arena}/notes.txt/studies"),
    ),
    Case(
        "storage/study-folder-is-a-file",
        ("storage: {arena}/blocked/tiny is a file",),
        args=("--set", "storage={arena}/blocked"),
    ),
    Case("storage/nul-byte", ("storage: holds a control character",), "storage_nul.yaml"),
    Case("storage/unknown-user", (f"storage: {NOBODY}/studies",), args=("--set", f"storage={NOBODY}/studies")),
    Case(
        "storage/symlink-loop",
        ("storage: {case}/loop/studies", "loop"),
        args=("--set", "storage={case}/loop/studies"),
        make="symlink loop",
    ),
    Case("storage/name-too-long", ("longer than 255 bytes",), args=("--set", "storage={arena}/" + "s" * 300)),
    Case("storage/empty", ("storage: must name a folder",), args=("--set", "storage=''")),
    Case(
        "storage/read-only",
        ("storage: {case}/locked: permission denied",),
        args=("--set", "storage={case}/locked/studies"),
        make="read-only folder",
        needs_non_root=True,
    ),
]

SETTINGS = [
    Case("setting/cpus-infinite", ("resources.cpus_per_trial: Input should be a finite number",), "cpus_infinite.yaml"),
    Case("setting/seed-negative", ("seed: Input should be greater than or equal to 0",), "seed_negative.yaml"),
    Case(
        "setting/seed-huge",
        ("search.seed: Input should be less than or equal to 4294967295",),
        args=("--set", "search.seed=99999999999999999999"),
    ),
]

SCAN = "{data}/scans/mri0000.h5"  # a training scan of tiny_mri (4 train, 1 val, 2 test, 2 unlabeled)
DATA = [
    Case("data/image-int16", (f"{SCAN}: image is stored as int16",), data="image int16"),
    Case("data/image-float64", (f"{SCAN}: image is stored as float64",), data="image float64"),
    Case("data/image-complex", (f"{SCAN}: image is stored as complex64",), data="image complex64"),
    Case("data/labels-float", (f"{SCAN}: labels are stored as float32",), data="labels float32"),
    Case("data/nan-voxels", (f"{SCAN}: image has 5 NaN voxels",), data="nan voxels"),
    Case("data/inf-voxels", (f"{SCAN}: image has 2 infinite voxels",), data="inf voxels"),
    Case(
        "data/empty-label-map",
        ("{data}/scans/mri0005.h5: scan 'mri0005' in the test split has an empty label map",),
        data="empty label map",
    ),
    Case("data/label-above-classes", (f"{SCAN}: label value 7 is not a class",), data="label above classes"),
    Case("data/label-negative", (f"{SCAN}: label value -3 is not a class",), data="label negative"),
    Case("data/missing-image-key", (f"{SCAN}: missing key 'image'",), data="missing image key"),
    Case("data/fewer-slices-than-manifest", (f"{SCAN}: image slices 0..3 have shape (2,",), data="fewer slices"),
    Case(
        "data/split-train-test-overlap",
        ("{data}/dataset.json: scan 'mri0000' is in both the train and the test split",),
        data="split train test overlap",
    ),
    Case(
        "data/split-scan-twice",
        ("{data}/dataset.json: scan 'mri0001' is listed twice in the train split",),
        data="split scan twice",
    ),
    Case(
        "data/split-missing-scan",
        ("{data}/dataset.json: the test split names scan 'ghost', which does not exist",),
        data="split missing scan",
    ),
    Case("data/missing-scan-file", (f"{SCAN}: file not found",), data="missing scan file"),
    Case("data/truncated-h5", (f"{SCAN}: not a readable HDF5 file",), data="truncated h5"),
    Case("data/corrupt-h5", (f"{SCAN}: not a readable HDF5 file",), data="corrupt h5"),
    Case("data/corrupt-h5-metadata", (f"{SCAN}: cannot read 'image'",), data="corrupt h5 metadata"),
    Case("data/manifest-not-json", ("{data}/dataset.json: not valid JSON",), data="manifest not_json.json"),
    Case("data/manifest-empty", ("{data}/dataset.json: not valid JSON",), data="manifest empty.json"),
    Case("data/manifest-a-list", ("{data}/dataset.json: not a data set manifest",), data="manifest list.json"),
    Case("data/manifest-no-scans", ("{data}/dataset.json: the train split is empty",), data="no scans"),
    Case(
        "data/a-file-not-a-folder",
        ("{data}/dataset.json: a data set is a folder",),
        fields={"datasets": ["{data}/dataset.json"]},
        data="unchanged",
    ),
    Case("data/unknown-user", (f"datasets: {NOBODY}/data",), fields={"datasets": [f"{NOBODY}/data"]}),
    Case("data/nul-byte", ("datasets: holds a control character",), fields={"datasets": ["mri\0/../x"]}),
    Case("data/folder-not-readable", ("{data}: permission denied",), data="folder not readable", needs_non_root=True),
    Case("data/scan-not-readable", (f"{SCAN}: permission denied",), data="scan not readable", needs_non_root=True),
]

# A manifest's scan ids and file names become paths inside the data set: each of these would read
# a file outside it (one is planted there) or a file no scan id can name.
MANIFEST = "{data}/dataset.json: scan id"
SKMTEA_TEST = "{data}/annotations/v1.0.0/test.json"
MANIFEST_NAMES = [
    Case(
        "manifest/scan-id-dotdot",
        (f"{MANIFEST} '../../outside' is not a plain file name",),
        data="scan id ../../outside",
    ),
    Case(
        "manifest/scan-id-absolute",
        (f"{MANIFEST} '{{case}}/stolen' is not a plain file name",),
        data="scan id {case}/stolen",
    ),
    Case(
        "manifest/scan-id-separator",
        (f"{MANIFEST} 'sub/mri0000' is not a plain file name",),
        data="scan id sub/mri0000",
    ),
    Case(
        "manifest/scan-id-backslash",
        (f"{MANIFEST} '..\\\\mri0000' is not a plain file name",),
        data="scan id ..\\mri0000",
    ),
    Case("manifest/scan-id-dots", (f"{MANIFEST} '..' is not a plain file name",), data="scan id .."),
    Case("manifest/scan-id-empty", (f"{MANIFEST} '' is not a plain file name",), data="scan id "),
    Case(
        "manifest/skmtea-scan-id-dotdot",
        (f"{SKMTEA_TEST}: scan id '../../outside' is not a plain file name",),
        data="skmtea scan_id",
    ),
    Case(
        "manifest/skmtea-file-name-dotdot",
        (f"{SKMTEA_TEST}: file name '../../outside.h5' is not a plain file name",),
        data="skmtea file_name",
    ),
]

# A database tracking store whose driver is not installed: SQLAlchemy's default driver for each
# scheme MLflow accepts, refused before anything runs, in a dry run too, the password redacted.
_DB = "study:secret@127.0.0.1"
TRACKING = [
    Case(
        "tracking/postgresql-no-driver",
        (
            "tracking_uri postgresql://study:***@127.0.0.1:5432/mlflow",
            "driver 'psycopg' is not installed",
            'pip install "psycopg[binary]"',
        ),
        args=("--tracking-uri", f"postgresql://{_DB}:5432/mlflow"),
        absent="psycopg",
    ),
    Case(
        "tracking/postgresql-no-driver-dry-run",
        ("driver 'psycopg' is not installed", ".[postgres]"),
        args=("--dry-run", "--tracking-uri", f"postgresql://{_DB}/mlflow"),
        absent="psycopg",
    ),
    Case(
        "tracking/mysql-no-driver",
        ("tracking_uri mysql://study:***@127.0.0.1/mlflow", "driver 'mysqldb'", 'pip install "mysqlclient"', "PyMySQL"),
        args=("--tracking-uri", f"mysql://{_DB}/mlflow"),
        absent="MySQLdb",
    ),
    Case(
        "tracking/mssql-no-driver-dry-run",
        ("tracking_uri mssql://study:***@127.0.0.1/mlflow", "driver 'pyodbc'", 'pip install "pyodbc"'),
        args=("--dry-run", "--tracking-uri", f"mssql://{_DB}/mlflow"),
        absent="pyodbc",
    ),
]

CASES = YAML + PYTHON_TAGS + SIZE + NAMES + STORAGE + SETTINGS + DATA + MANIFEST_NAMES + TRACKING


def _break(data: Path, how: str) -> None:
    """Apply one mutation to a copy of the tiny MRI data set."""
    scan = data / "scans" / "mri0000.h5"
    manifest_path = data / "dataset.json"
    manifest = json.loads(manifest_path.read_text())
    if how.startswith("image "):  # the image rewritten in another dtype, shape kept
        with h5py.File(scan, "a") as f:
            image = f["image"][:]
            del f["image"]
            f["image"] = image.astype(how.split()[1])
    elif how == "labels float32":
        with h5py.File(scan, "a") as f:
            labels = f["labels"][:]
            del f["labels"]
            f["labels"] = labels.astype(np.float32)
    elif how == "nan voxels":
        with h5py.File(scan, "a") as f:
            f["image"][1, 0, 3, :5] = np.nan
    elif how == "inf voxels":
        with h5py.File(scan, "a") as f:
            f["image"][3, 0, 0, :2] = [np.inf, -np.inf]
    elif how == "empty label map":
        with h5py.File(data / "scans" / "mri0005.h5", "a") as f:
            f["labels"][...] = 0
    elif how == "label above classes":
        with h5py.File(scan, "a") as f:
            f["labels"][2, 5, 5] = 7  # the knee phantom has 4 classes
    elif how == "label negative":
        with h5py.File(scan, "a") as f:
            labels = f["labels"][:].astype(np.int16)
            labels[0, 0, 0] = -3
            del f["labels"]
            f["labels"] = labels
    elif how == "missing image key":
        with h5py.File(scan, "a") as f:
            del f["image"]
    elif how == "fewer slices":  # the manifest says 4 slices, the file holds 2
        with h5py.File(scan, "a") as f:
            image = f["image"][:2]
            del f["image"]
            f["image"] = image
    elif how == "split train test overlap":
        manifest["split"]["test"].append("mri0000")
    elif how == "split scan twice":
        manifest["split"]["train"].append("mri0001")
    elif how == "split missing scan":
        manifest["split"]["test"].append("ghost")
    elif how == "missing scan file":
        scan.unlink()
    elif how == "truncated h5":
        scan.write_bytes(scan.read_bytes()[:2048])
    elif how == "corrupt h5":  # same size, every byte after the first kilobyte replaced
        size = scan.stat().st_size
        scan.write_bytes(scan.read_bytes()[:1024] + np.random.default_rng(0).bytes(size - 1024))
    elif how == "corrupt h5 metadata":  # the header survives, the root group's symbol table does not
        damaged = bytearray(scan.read_bytes())
        damaged[1000:1200] = np.random.default_rng(1).bytes(200)
        scan.write_bytes(bytes(damaged))
    elif how.startswith("manifest "):
        shutil.copyfile(CORPUS / "data" / how.split()[1], manifest_path)
        return
    elif how.startswith("scan id "):  # mri0000 renamed, its file planted where the new id points
        new = how.removeprefix("scan id ").replace("{case}", str(data.parent))
        manifest["scans"][new] = manifest["scans"].pop("mri0000")
        manifest["split"] = {
            role: [new if s == "mri0000" else s for s in ids] for role, ids in manifest["split"].items()
        }
        planted = data / "scans" / f"{new}.h5"
        planted.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(scan, planted)
    elif how.startswith("skmtea "):  # a miniature SKM-TEA whose test annotation points outside it
        shutil.rmtree(data)
        write_skmtea(data)
        shutil.copyfile(data / "image_files" / "MTR_004.h5", data.parent / "outside.h5")
        key = how.removeprefix("skmtea ")
        old, new = {"scan_id": ("MTR_004", "../../outside"), "file_name": ("MTR_004.h5", "../../outside.h5")}[key]
        ann = data / "annotations" / "v1.0.0" / "test.json"
        ann.write_text(ann.read_text().replace(f'"{key}": "{old}"', f'"{key}": "{new}"'))
        return
    elif how == "no scans":
        manifest["scans"], manifest["split"] = {}, {"train": [], "val": [], "test": [], "unlabeled": []}
    elif how == "folder not readable":
        data.chmod(0)
        return
    elif how == "scan not readable":
        scan.chmod(0)
        return
    elif how != "unchanged":
        raise ValueError(how)
    manifest_path.write_text(json.dumps(manifest))


def _make(case_dir: Path, how: str) -> None:
    if how == "huge spec":  # 2 MiB: one name, then one long comment
        (case_dir / "huge.yaml").write_text("name: tiny\n" + "#" * (2**21 - 12) + "\n")
    elif how == "symlink loop":
        (case_dir / "loop").symlink_to(case_dir / "loop")
    elif how == "read-only folder":
        (case_dir / "locked").mkdir()
        (case_dir / "locked").chmod(0o555)
    else:
        raise ValueError(how)


@dataclass
class Arena:
    """The module's working folder, with an earlier study of the same name no input may touch."""

    root: Path
    earlier: Path
    earlier_bytes: bytes
    earlier_mtime_ns: int


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Arena:
    root = tmp_path_factory.mktemp("hostile")
    earlier = root / "studies" / "tiny" / "trials" / "x" / "result.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(json.dumps({"trial_id": "x", "status": "finished", "dice": 0.8125}))
    (root / "studies" / "tiny" / "study.json").write_text(json.dumps({"name": "tiny", "trials": []}))
    (root / "notes.txt").write_text("a file where a folder would have to be\n")
    (root / "blocked").mkdir()
    (root / "blocked" / "tiny").write_text("a file where the study folder would have to be\n")
    return Arena(root, earlier, earlier.read_bytes(), earlier.stat().st_mtime_ns)


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and mtime: what a run may not change."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _around(arena: Arena) -> dict[str, tuple]:
    """The session's temporary folder next to the arena (where a ``../`` would land) and the
    phantom cache in it (a study that got as far as starting would generate its data there)."""
    base = arena.root.parent
    out = {p.name: (p.lstat().st_mode, p.lstat().st_mtime_ns) for p in base.iterdir() if p != arena.root}
    cache = base / "data_cache"
    return {**out, **({f"data_cache/{k}": v for k, v in _tree(cache).items()} if cache.is_dir() else {})}


def _fill(text: str, arena: Arena, case_dir: Path, data: Path) -> str:
    return text.replace("{arena}", str(arena.root)).replace("{case}", str(case_dir)).replace("{data}", str(data))


def _setup(case: Case, arena: Arena, case_dir: Path, data: Path, tiny_mri: Path) -> Path:
    """Make what the case needs in its own folder and return the spec to run."""
    case_dir.mkdir()
    if case.data is not None:
        shutil.copytree(tiny_mri, data)
        _break(data, case.data)
    if case.make is not None:
        _make(case_dir, case.make)
    if case.spec is not None:
        spec = _fill(case.spec, arena, case_dir, data)
        return Path(spec) if spec.startswith("/") else CORPUS / "specs" / spec
    fields = {
        "datasets": [str(data)] if case.data is not None else ["mri"],
        **json.loads(_fill(json.dumps(case.fields), arena, case_dir, data)),
    }
    return write_spec(case_dir, scale=TINY_SCALE, storage=str(arena.root / "studies"), **fields)


def _restore_permissions(case_dir: Path) -> None:
    for folder, dirs, files in os.walk(case_dir):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_in_one_line_and_writes_nothing(
    case: Case, arena: Arena, tiny_mri: Path, tally
) -> None:
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip(
            "running as root, whom permission bits do not stop; the refusal is simulated in "
            "tests/data/test_checks.py::test_an_unreadable_data_set_is_permission_denied"
        )
    if case.absent is not None and importlib.util.find_spec(case.absent) is not None:
        pytest.skip(f"{case.absent} is installed here")
    tally.trying("input", case.id)
    case_dir = arena.root / "cases" / case.id.replace("/", "-")
    case_dir.parent.mkdir(exist_ok=True)
    data = case_dir / "data"
    try:
        spec = _setup(case, arena, case_dir, data, tiny_mri)
        args = [_fill(a, arena, case_dir, data) for a in case.args]
        before, around = _tree(arena.root), _around(arena)
        result = run_cli("study.run", str(spec), *args, cwd=arena.root)
        after, around_after = _tree(arena.root), _around(arena)
    finally:
        _restore_permissions(case_dir)
    assert_user_error(result, *(_fill(f, arena, case_dir, data) for f in case.fragments))
    assert after == before, (
        "the run wrote or changed files: " + str(sorted(set(after.items()) ^ set(before.items())))[:2000]
    )
    assert around_after == around, "the run wrote next to the arena or into the phantom cache"
    assert arena.earlier.read_bytes() == arena.earlier_bytes
    assert arena.earlier.stat().st_mtime_ns == arena.earlier_mtime_ns
    for marker in case.markers:
        assert not (arena.root / marker).exists(), f"the Python tag ran: {marker} was created"
    tally.held_up("input", case.id)


def test_the_same_data_set_unbroken_passes(tmp_path: Path, tiny_mri: Path) -> None:
    """The control: the harness refuses the corpus for what is broken in it, not for itself."""
    data = tmp_path / "data"
    shutil.copytree(tiny_mri, data)
    spec = write_spec(tmp_path, datasets=[str(data)])
    result = run_cli("study.run", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "total: 4 trials" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", spec.name]
