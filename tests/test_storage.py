"""TenantStorage on the local backend: paths, isolation, atomicity, pickling."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tenantkit.config import DEFAULT_TIERS, Tier, get_settings
from tenantkit.errors import FileNotFound, InvalidPath, StorageError, TenantKitError
from tenantkit.storage import (
    AbsolutePath,
    BackslashInPath,
    ControlCharacter,
    EmptyPath,
    EmptySegment,
    LocalBackend,
    LookalikeCharacter,
    MemoryLedger,
    NameTooLong,
    NotAFile,
    PathEscapesRoot,
    PathTooLong,
    ReservedName,
    StorageUnavailable,
    SymlinkInPath,
    TenantStorage,
    create_volume_manager,
    local_root,
    normalize_path,
    scan_usage,
    storage_for,
)
from tenantkit.storage.paths import TEMP_PREFIX

FREE = DEFAULT_TIERS["free"]


def make_storage(base: Path, tenant_id: str, tier: Tier = FREE) -> TenantStorage:
    return TenantStorage(tenant_id, tier, LocalBackend(base / "volumes" / tenant_id))


def snapshot(base: Path, skip: Path | None = None) -> dict[str, tuple[int, str]]:
    """Every entry under ``base`` (links not followed): mode and content hash."""
    seen: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        if skip is not None and Path(dirpath) == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if skip is not None and full == skip:
                continue
            st_ = full.lstat()
            digest = ""
            if full.is_file() and not full.is_symlink():
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
            elif full.is_symlink():
                digest = os.readlink(full)
            seen[str(full.relative_to(base))] = (st_.st_mode, digest)
    return seen


# -- path rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.txt", "a.txt"),
        ("dir/sub/file.json", "dir/sub/file.json"),
        ("./a/./b", "a/b"),
        ("a/../b", "b"),
        ("a/b/../../c", "c"),
        ("e\u0301.txt", "\u00e9.txt"),  # NFC
        ("%2e%2e/x", "%2e%2e/x"),  # a literal name, never decoded
        ("...", "..."),
        ("..a", "..a"),
    ],
)
def test_normalize_path_accepts(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("", EmptyPath),
        (".", EmptyPath),
        ("a/..", EmptyPath),
        ("/etc/passwd", AbsolutePath),
        ("..", PathEscapesRoot),
        ("../b", PathEscapesRoot),
        ("a/../../b", PathEscapesRoot),
        ("a\x00b", ControlCharacter),
        ("a\nb", ControlCharacter),
        ("a\u202eb", ControlCharacter),  # right-to-left override
        ("a\u200bb", ControlCharacter),  # zero-width space
        ("a\\b", BackslashInPath),
        ("..\\x", BackslashInPath),
        ("\u2024\u2024/x", LookalikeCharacter),  # one dot leader
        ("\u2025/x", LookalikeCharacter),  # two dot leader
        ("a\uff0fb", LookalikeCharacter),  # fullwidth solidus
        ("a\u2215b", LookalikeCharacter),  # division slash
        ("\uff0e\uff0e/x", LookalikeCharacter),  # fullwidth full stop
        ("a\ufe68b", LookalikeCharacter),  # small reverse solidus
        ("a//b", EmptySegment),
        ("a/", EmptySegment),
        (f"{TEMP_PREFIX}x", ReservedName),
        ("x" * 256, NameTooLong),
        ("\u00e9" * 128, NameTooLong),  # 256 bytes in UTF-8
        ("/".join(["d" * 200] * 6), PathTooLong),
    ],
)
def test_normalize_path_rejects(path: str, error: type[InvalidPath]) -> None:
    with pytest.raises(error) as info:
        normalize_path(path)
    assert isinstance(info.value, InvalidPath)
    assert info.value.status == 400


def test_normalize_path_rejects_non_strings() -> None:
    with pytest.raises(InvalidPath):
        normalize_path(b"a.txt")  # type: ignore[arg-type]


def test_directory_prefixes() -> None:
    assert normalize_path("", directory=True) == ""
    assert normalize_path("reports/", directory=True) == "reports"
    assert normalize_path("a/..", directory=True) == ""
    with pytest.raises(EmptySegment):
        normalize_path("reports//", directory=True)
    with pytest.raises(PathEscapesRoot):
        normalize_path("../", directory=True)


segments = st.sampled_from(
    [
        "..",
        ".",
        "",
        "a",
        "b.txt",
        "link",
        "filelink",
        "%2e%2e",
        "%2E%2E%2F",
        "..%2f",
        "\u2024\u2024",
        "\u2025",
        "\uff0e\uff0e",
        "\uff0f",
        "\u2215",
        "\\",
        "..\\..",
        "\x00",
        "\u202e",
        "e\u0301",
        "tenant-b",
        "volumes",
        "outside",
        TEMP_PREFIX + "x",
    ]
)
paths = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "/", "./", "../", "//"]),
        st.lists(segments, min_size=1, max_size=6),
    ),
    st.text(max_size=40),
)


class Sandbox:
    """A data dir with two tenants, files outside, and links leading out."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="tk-sandbox-"))
        (self.base / "outside").mkdir()
        (self.base / "outside" / "secret.txt").write_text("outside")
        self.victim = make_storage(self.base, "tenant-b", DEFAULT_TIERS["enterprise"])
        self.victim.write_text("b.txt", "tenant b's")
        self.storage = make_storage(self.base, "tenant-a", DEFAULT_TIERS["enterprise"])
        self.storage.write_text("a/b.txt", "mine")
        root = self.storage.backend.root  # type: ignore[attr-defined]
        self.root: Path = root
        (root / "link").symlink_to(self.base / "outside")
        (root / "filelink").symlink_to(self.base / "outside" / "secret.txt")
        (root / "a" / "link").symlink_to(self.base / "volumes" / "tenant-b")
        (root / "up").symlink_to("..")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    shutil.rmtree(box.base, ignore_errors=True)


def _inside(root: Path, normal: str) -> bool:
    resolved = os.path.realpath(root / normal)
    return os.path.commonpath([resolved, os.path.realpath(root)]) == os.path.realpath(root)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, data=st.binary(max_size=32))
@example(path="link/secret.txt", data=b"x")
@example(path="filelink", data=b"x")
@example(path="a/link/b.txt", data=b"x")
@example(path="up/tenant-b/b.txt", data=b"x")
@example(path="%2e%2e/%2e%2e/outside/secret.txt", data=b"x")
@example(path="\u2024\u2024/tenant-b/b.txt", data=b"x")
@example(path="..\uff0ftenant-b\uff0fb.txt", data=b"x")
def test_no_operation_leaves_the_root(sandbox: Sandbox, path: str, data: bytes) -> None:
    storage = sandbox.storage
    before = snapshot(sandbox.base, skip=sandbox.root)
    operations = [
        lambda: storage.write_bytes(path, data),
        lambda: storage.read_bytes(path),
        lambda: storage.stat(path),
        lambda: storage.exists(path),
        lambda: storage.list(path),
        lambda: storage.list(path, recursive=False),
        lambda: storage.delete(path),
    ]
    for operation in operations:
        try:
            result = operation()
        except (StorageError, FileNotFound):
            continue
        if isinstance(result, list):
            for entry in result:
                assert _inside(sandbox.root, entry.path)
        elif result is not False:
            assert _inside(sandbox.root, normalize_path(path))
    assert snapshot(sandbox.base, skip=sandbox.root) == before
    assert sandbox.victim.read_text("b.txt") == "tenant b's"


def test_symlinks_are_never_followed(sandbox: Sandbox) -> None:
    storage = sandbox.storage
    with pytest.raises(SymlinkInPath):
        storage.read_text("link/secret.txt")
    with pytest.raises(SymlinkInPath):
        storage.read_text("filelink")
    with pytest.raises(SymlinkInPath):
        storage.write_text("link/new.txt", "x")
    with pytest.raises(SymlinkInPath):
        storage.write_text("filelink", "x")
    with pytest.raises(SymlinkInPath):
        storage.delete("filelink")
    with pytest.raises(SymlinkInPath):
        storage.read_text("a/link/b.txt")
    assert not (sandbox.base / "outside" / "new.txt").exists()
    assert (sandbox.base / "outside" / "secret.txt").read_text() == "outside"
    listed = {entry.path for entry in storage.list()}
    assert "link" not in listed
    assert "filelink" not in listed
    assert all(not p.startswith(("link/", "up/", "a/link/")) for p in listed)


def test_symlinked_tenant_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "acme").symlink_to(tmp_path / "elsewhere")
    storage = make_storage(tmp_path, "acme")
    with pytest.raises(StorageUnavailable):
        storage.write_text("x.txt", "x")
    assert list((tmp_path / "elsewhere").iterdir()) == []


# -- the API ----------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> TenantStorage:
    return make_storage(tmp_path, "acme")


def test_round_trips(storage: TenantStorage) -> None:
    info = storage.write_bytes("bin/data.bin", b"\x00\x01\x02")
    assert (info.path, info.size, info.is_dir) == ("bin/data.bin", 3, False)
    assert storage.read_bytes("bin/data.bin") == b"\x00\x01\x02"
    storage.write_text("notes.txt", "h\u00e9llo")
    assert storage.read_text("notes.txt") == "h\u00e9llo"
    storage.write_json("result.json", {"status": "processed", "n": [1, 2]})
    assert storage.read_json("result.json") == {"status": "processed", "n": [1, 2]}
    assert storage.exists("bin/data.bin")
    assert storage.exists("bin")
    assert not storage.exists("nope.txt")
    assert storage.stat("bin").is_dir
    assert storage.stat("notes.txt").size == len("h\u00e9llo".encode())
    assert storage.usage() == (3 + 6 + len(b'{"status": "processed", "n": [1, 2]}'), 3)


def test_seed_write_file(tmp_path: Path) -> None:
    vm = create_volume_manager("acme", settings=get_settings(data_dir=tmp_path))
    vm.write_file("result.json", {"status": "processed"})
    vm.write_file("raw.bin", b"\xff")
    vm.write_file("note.txt", "hi")
    assert vm.read_json("result.json") == {"status": "processed"}
    assert vm.read_file("raw.bin") == b"\xff"
    assert vm.read_text("note.txt") == "hi"
    assert (tmp_path / "volumes" / "acme" / "result.json").is_file()


def test_missing_files(storage: TenantStorage) -> None:
    for call in (
        lambda: storage.read_bytes("nope"),
        lambda: storage.stat("nope"),
        lambda: storage.delete("nope"),
        lambda: storage.read_bytes("dir/nope"),
    ):
        with pytest.raises(FileNotFound) as info:
            call()
        assert info.value.status == 404
    storage.delete("nope", missing_ok=True)


def test_files_and_directories_do_not_mix(storage: TenantStorage) -> None:
    storage.write_text("dir/file.txt", "x")
    with pytest.raises(NotAFile):
        storage.write_text("dir", "x")
    with pytest.raises(NotAFile):
        storage.read_bytes("dir")
    with pytest.raises(NotAFile):
        storage.delete("dir")
    with pytest.raises(NotAFile):
        storage.write_text("dir/file.txt/child", "x")
    with pytest.raises(FileNotFound):
        storage.read_bytes("dir/file.txt/child")
    assert storage.read_text("dir/file.txt") == "x"
    assert storage.usage() == (1, 1)


def test_list(storage: TenantStorage) -> None:
    for path in ("a.txt", "reports/2024-01.json", "reports/2024-02.json", "reports/old/x"):
        storage.write_text(path, "x")
    assert [e.path for e in storage.list()] == [
        "a.txt",
        "reports/2024-01.json",
        "reports/2024-02.json",
        "reports/old/x",
    ]
    assert [e.path for e in storage.list("reports/2024")] == [
        "reports/2024-01.json",
        "reports/2024-02.json",
    ]
    flat = storage.list("reports/", recursive=False)
    assert [(e.path, e.is_dir) for e in flat] == [
        ("reports/2024-01.json", False),
        ("reports/2024-02.json", False),
        ("reports/old", True),
    ]
    assert storage.list("missing/") == []
    assert storage.list("a.txt/") == []
    assert [e.public()["type"] for e in storage.list("", recursive=False)] == [
        "file",
        "directory",
    ]


def test_delete_prunes_empty_directories(storage: TenantStorage) -> None:
    storage.write_text("a/b/c.txt", "x")
    storage.write_text("a/keep.txt", "x")
    storage.delete("a/b/c.txt")
    assert not storage.exists("a/b")
    assert storage.exists("a/keep.txt")
    assert storage.usage() == (1, 1)


def test_streaming_round_trip(storage: TenantStorage) -> None:
    chunk = os.urandom(64 * 1024)
    digest = hashlib.sha256()
    with storage.open_write("big.bin") as writer:
        for _ in range(40):
            writer.write(chunk)
            digest.update(chunk)
    assert writer.info is not None
    assert writer.info.size == 40 * len(chunk)
    read = hashlib.sha256()
    for part in storage.iter_bytes("big.bin", chunk_size=100_000):
        assert len(part) <= 100_000
        read.update(part)
    assert read.digest() == digest.digest()
    assert storage.usage() == (40 * len(chunk), 1)


def test_write_stream_from_a_file_object(storage: TenantStorage) -> None:
    info = storage.write_stream("copy.bin", io.BytesIO(b"abc" * 1000))
    assert info.size == 3000
    assert storage.read_bytes("copy.bin") == b"abc" * 1000


# -- atomicity ----------------------------------------------------------------------


def failing_chunks(good: int) -> Iterator[bytes]:
    for _ in range(good):
        yield b"n" * 1000
    raise RuntimeError("the upload broke")


@pytest.mark.parametrize("good_chunks", [0, 1, 5])
def test_failed_write_keeps_old_content(storage: TenantStorage, good_chunks: int) -> None:
    storage.write_bytes("data/file.bin", b"old content")
    before = storage.usage()
    with pytest.raises(RuntimeError, match="the upload broke"):
        storage.write_stream("data/file.bin", failing_chunks(good_chunks))
    assert storage.read_bytes("data/file.bin") == b"old content"
    assert storage.usage() == before
    root: Path = storage.backend.root  # type: ignore[attr-defined]
    assert sorted(p.name for p in (root / "data").iterdir()) == ["file.bin"]


def test_failed_new_file_leaves_nothing(storage: TenantStorage) -> None:
    with pytest.raises(RuntimeError):
        storage.write_stream("new/deep/file.bin", failing_chunks(2))
    assert not storage.exists("new")
    assert storage.usage() == (0, 0)
    assert scan_usage(storage.backend) == (0, 0)


def test_aborted_writer_keeps_old_content(storage: TenantStorage) -> None:
    storage.write_bytes("f", b"old")
    writer = storage.open_write("f")
    writer.write(b"new new new")
    writer.abort()
    assert storage.read_bytes("f") == b"old"
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")
    assert storage.usage() == (3, 1)


def test_dropped_writer_never_commits(storage: TenantStorage) -> None:
    storage.write_bytes("f", b"old")
    writer = storage.open_write("f")
    writer.write(b"half")
    del writer
    assert storage.read_bytes("f") == b"old"
    assert storage.usage() == (3, 1)


def test_readers_never_see_a_partial_file(storage: TenantStorage) -> None:
    versions = [bytes([n]) * 200_000 for n in range(4)]
    storage.write_bytes("shared.bin", versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(storage.read_bytes("shared.bin"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(30):
            with storage.open_write("shared.bin") as writer:
                data = versions[round_ % 4]
                for start in range(0, len(data), 50_000):
                    writer.write(data[start : start + 50_000])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(versions)


# -- tenants are apart ----------------------------------------------------------------


def test_cross_tenant_matrix(tmp_path: Path) -> None:
    a = make_storage(tmp_path, "tenant-a")
    b = make_storage(tmp_path, "tenant-b")
    a.write_text("private/secret.txt", "a's secret")
    attempts = [
        "private/secret.txt",
        "../tenant-a/private/secret.txt",
        "/private/secret.txt",
        str(tmp_path / "volumes" / "tenant-a" / "private" / "secret.txt"),
        "..\\tenant-a\\private\\secret.txt",
        "\u2024\u2024/tenant-a/private/secret.txt",
        "%2e%2e/tenant-a/private/secret.txt",
    ]
    for path in attempts:
        with pytest.raises(TenantKitError):
            b.read_bytes(path)
        with pytest.raises(TenantKitError):
            b.delete(path)
        with pytest.raises(TenantKitError):
            b.stat(path)
        with contextlib.suppress(TenantKitError):
            b.write_text(path, "b was here")
        try:
            listed = b.list(path.rpartition("/")[0] + "/" if "/" in path else "")
        except TenantKitError:
            listed = []
        assert all("secret" not in e.path or b.read_text(e.path) != "a's secret" for e in listed)
    assert a.read_text("private/secret.txt") == "a's secret"
    assert [e.path for e in a.list()] == ["private/secret.txt"]
    assert a.usage() == (len("a's secret"), 1)
    for entry in b.list():
        assert b.read_text(entry.path) == "b was here"


def test_storage_for_picks_the_local_directory(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path)
    storage = storage_for("acme", FREE, settings, None)
    storage.write_text("x.txt", "x")
    assert local_root(settings, "acme") == tmp_path / "volumes" / "acme"
    assert (tmp_path / "volumes" / "acme" / "x.txt").read_text() == "x"
    with pytest.raises(TenantKitError):
        storage_for("../evil", FREE, settings, None)


# -- pickling ---------------------------------------------------------------------------


def test_pickles_and_keeps_working(storage: TenantStorage) -> None:
    storage.write_text("a.txt", "hello")
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.tenant_id == "acme"
    assert copy.tier == storage.tier
    assert copy.read_text("a.txt") == "hello"
    assert isinstance(copy.ledger, MemoryLedger)
    assert copy.usage() == (5, 1)
    copy.write_text("b.txt", "world")
    assert storage.read_text("b.txt") == "world"
    writer_copy = pickle.loads(pickle.dumps(copy))
    assert writer_copy.usage() == (10, 2)


def test_travels_inside_a_tenant_context(tmp_path: Path) -> None:
    from tenantkit.testing import make_context

    storage = make_storage(tmp_path, "acme")
    storage.write_text("in.txt", "sent along")
    ctx = pickle.loads(pickle.dumps(make_context("acme", storage=storage)))
    assert ctx.storage.read_text("in.txt") == "sent along"
    ctx.storage.write_text("out.txt", "written remotely")
    assert storage.read_text("out.txt") == "written remotely"
    assert ctx.storage.unshared_change() == (len("written remotely"), 1)


def test_delete_all(storage: TenantStorage) -> None:
    storage.write_text("a.txt", "aa")
    storage.write_text("d/e/f.txt", "fff")
    assert storage.delete_all() == (5, 2)
    assert storage.list() == []
    assert storage.usage() == (0, 0)
