"""The Modal Volume backend, against an in-memory stand-in of the Volume API.

Modal cannot be reached from the tests, so :class:`VolumeStandIn` implements
exactly the four ``modal.Volume`` methods the backend calls, with the
signatures of the installed modal (checked below) and the behaviour its
source shows: ``listdir`` raises ``modal.exception.NotFoundError`` for a
missing path, ``read_file`` and ``remove_file`` raise ``FileNotFoundError``,
and ``batch_upload`` applies its files only when the batch closes cleanly.
"""

from __future__ import annotations

import inspect
import itertools
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import modal
import modal.exception
import modal.volume
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modal._utils.name_utils import check_object_name, is_valid_object_name
from modal.volume import FileEntry, FileEntryType

from tenantkit.config import TENANT_ID_PATTERN, Tier, get_settings
from tenantkit.errors import ConfigurationError, FileNotFound, InvalidTenantId
from tenantkit.storage import (
    ModalVolumeBackend,
    StorageQuotaExceeded,
    StorageUnavailable,
    TenantStorage,
    storage_for,
    volume_name,
)

TIER = Tier("t", 100, 10, 5, 100, storage_bytes=10_000, max_files=10)


class _BatchStandIn:
    def __init__(self) -> None:
        self.pending: list[tuple[bytes, str]] = []

    def put_file(
        self, local_file: Path | str | BinaryIO, remote_path: Any, mode: int | None = None
    ) -> None:
        assert not isinstance(local_file, str | Path), "the backend uploads file objects"
        local_file.seek(0)
        self.pending.append((local_file.read(), str(remote_path)))


class VolumeStandIn:
    """In-memory stand-in for ``modal.Volume``: listdir, read_file, batch_upload, remove_file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.files: dict[str, tuple[bytes, int]] = {}
        self.calls: list[str] = []
        self.fail_uploads = False

    def _dirs(self) -> set[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return dirs

    def _entry(self, path: str) -> FileEntry:
        if path in self.files:
            data, mtime = self.files[path]
            return FileEntry(path=path, type=FileEntryType.FILE, mtime=mtime, size=len(data))
        return FileEntry(path=path, type=FileEntryType.DIRECTORY, mtime=0, size=0)

    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        self.calls.append("listdir")
        key = path.strip("/")
        if key in self.files:
            return [self._entry(key)]
        prefix = f"{key}/" if key else ""
        below = sorted(p for p in set(self.files) | self._dirs() if p.startswith(prefix))
        if key and not below:
            raise modal.exception.NotFoundError(f"No such file or directory: {path}")
        if not recursive:
            below = [p for p in below if "/" not in p[len(prefix) :]]
        return [self._entry(p) for p in below]

    def read_file(self, path: str) -> Iterator[bytes]:
        self.calls.append("read_file")
        key = path.strip("/")
        if key not in self.files:
            raise FileNotFoundError(f"No such file: {path}")
        data = self.files[key][0]
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    @contextmanager
    def batch_upload(self, force: bool = False) -> Iterator[_BatchStandIn]:
        self.calls.append("batch_upload")
        batch = _BatchStandIn()
        yield batch
        if self.fail_uploads:
            raise modal.exception.InternalError("upload failed")
        for data, remote in batch.pending:
            key = remote.strip("/")
            if key in self.files and not force:
                raise FileExistsError(remote)
            if key in self._dirs():
                raise IsADirectoryError(remote)
            self.files[key] = (data, int(time.time()))

    def remove_file(self, path: str, recursive: bool = False) -> None:
        self.calls.append("remove_file")
        key = path.strip("/")
        if key not in self.files:
            raise FileNotFoundError(f"No such file: {path}")
        del self.files[key]


VOLUMES: dict[str, VolumeStandIn] = {}


def standin_factory(name: str) -> VolumeStandIn:
    """Module level, so backends pickle with it."""
    return VOLUMES.setdefault(name, VolumeStandIn(name))


@pytest.fixture(autouse=True)
def _fresh_volumes() -> Iterator[None]:
    VOLUMES.clear()
    yield
    VOLUMES.clear()


def make(tenant_id: str = "acme", tier: Tier = TIER) -> TenantStorage:
    backend = ModalVolumeBackend(volume_name("my-app", tenant_id), volume_factory=standin_factory)
    return TenantStorage(tenant_id, tier, backend)


# -- the stand-in matches modal ----------------------------------------------------


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("method", ["listdir", "read_file", "batch_upload", "remove_file"])
def test_standin_has_modal_signatures(method: str) -> None:
    assert _params(getattr(VolumeStandIn, method)) == _params(getattr(modal.Volume, method))


def test_batch_put_file_signature() -> None:
    real = modal.volume._AbstractVolumeUploadContextManager.put_file
    assert _params(_BatchStandIn.put_file) == _params(real)


def test_the_backend_calls_only_those_methods() -> None:
    storage = make()
    storage.write_text("a/b.txt", "hello")
    storage.read_text("a/b.txt")
    storage.list()
    storage.stat("a")
    storage.delete("a/b.txt")
    calls = set(VOLUMES[volume_name("my-app", "acme")].calls)
    assert calls == {"listdir", "read_file", "batch_upload", "remove_file"}
    assert all(hasattr(modal.Volume, name) for name in calls)


def test_volumes_are_created_on_first_use(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def from_name(name: str, **kwargs: Any) -> VolumeStandIn:
        seen.append((name, kwargs))
        return standin_factory(name)

    monkeypatch.setattr(modal.Volume, "from_name", from_name)
    settings = get_settings(data_dir=tmp_path, storage_backend="modal")
    storage = storage_for("acme-corp", TIER, settings, None, app_name="multi-tenant-saas")
    assert seen == []  # nothing is looked up before the first use
    storage.write_text("result.json", "{}")
    assert seen == [("multi-tenant-saas.acme-corp", {"create_if_missing": True})]
    assert VOLUMES["multi-tenant-saas.acme-corp"].files["result.json"][0] == b"{}"
    assert not (tmp_path / "volumes").exists()


def test_modal_backend_needs_the_app_name(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path, storage_backend="modal")
    with pytest.raises(ConfigurationError):
        storage_for("acme", TIER, settings, None)


# -- names --------------------------------------------------------------------------

tenant_ids = st.from_regex(TENANT_ID_PATTERN, fullmatch=True)


@given(app=st.text(max_size=120), tenant=tenant_ids)
def test_volume_names_follow_modal_rules(app: str, tenant: str) -> None:
    name = volume_name(app, tenant)
    assert len(name) <= 64
    assert is_valid_object_name(name)
    check_object_name(name, "Volume")
    assert name == volume_name(app, tenant)


@given(
    pairs=st.lists(
        st.tuples(st.text(alphabet="ab-_.!", max_size=70), tenant_ids),
        min_size=2,
        max_size=6,
        unique=True,
    )
)
def test_volume_names_never_collide(pairs: list[tuple[str, str]]) -> None:
    names = [volume_name(app, tenant) for app, tenant in pairs]
    assert len(set(names)) == len(pairs)


def test_volume_name_examples() -> None:
    assert volume_name("multi-tenant-saas", "acme-corp") == "multi-tenant-saas.acme-corp"
    assert volume_name("My App!", "t1").startswith("My-App-")
    assert volume_name("my.app", "t1") != volume_name("my-app", "t1")
    long = volume_name("a" * 60, "tenant-" + "x" * 50)
    assert len(long) == 64
    assert long != volume_name("a" * 60, "tenant-" + "x" * 49 + "y")
    with pytest.raises(InvalidTenantId):
        volume_name("app", "../etc")


# -- TenantStorage on the Modal backend -------------------------------------------


def test_round_trips_and_listing() -> None:
    storage = make()
    storage.write_json("results/r1.json", {"status": "processed"})
    storage.write_bytes("blob.bin", bytes(range(50)))
    assert storage.read_json("results/r1.json") == {"status": "processed"}
    assert storage.read_bytes("blob.bin") == bytes(range(50))
    assert b"".join(storage.iter_bytes("blob.bin", chunk_size=9)) == bytes(range(50))
    assert [e.path for e in storage.list()] == ["blob.bin", "results/r1.json"]
    assert [(e.path, e.is_dir) for e in storage.list(recursive=False)] == [
        ("blob.bin", False),
        ("results", True),
    ]
    assert storage.stat("results").is_dir
    assert storage.stat("blob.bin").size == 50
    assert storage.exists("results/r1.json")
    assert not storage.exists("nope")
    assert storage.usage() == (50 + len(b'{"status": "processed"}'), 2)
    storage.write_bytes("blob.bin", b"short")
    assert storage.usage() == (5 + len(b'{"status": "processed"}'), 2)
    storage.delete("blob.bin")
    with pytest.raises(FileNotFound):
        storage.read_bytes("blob.bin")
    with pytest.raises(FileNotFound):
        storage.delete("blob.bin")
    assert storage.usage() == (len(b'{"status": "processed"}'), 1)


def test_failed_upload_keeps_the_old_file() -> None:
    storage = make()
    storage.write_text("f.txt", "old")
    volume = VOLUMES[volume_name("my-app", "acme")]
    volume.fail_uploads = True
    with pytest.raises(StorageUnavailable):
        storage.write_text("f.txt", "new")
    volume.fail_uploads = False
    assert storage.read_text("f.txt") == "old"
    assert storage.usage() == (3, 1)


def test_failed_stream_uploads_nothing() -> None:
    storage = make()

    def chunks() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("client went away")

    before = list(VOLUMES.get(volume_name("my-app", "acme"), VolumeStandIn("x")).calls)
    with pytest.raises(RuntimeError):
        storage.write_stream("f.txt", chunks())
    volume = VOLUMES[volume_name("my-app", "acme")]
    assert "batch_upload" not in volume.calls[len(before) :]
    assert volume.files == {}
    assert storage.usage() == (0, 0)


def test_quota_is_checked_before_uploading() -> None:
    storage = make(tier=Tier("t", 100, 10, 5, 100, storage_bytes=100, max_files=2))
    storage.write_bytes("a", b"a" * 90)
    with pytest.raises(StorageQuotaExceeded):
        storage.write_bytes("b", b"b" * 20)
    volume = VOLUMES[volume_name("my-app", "acme")]
    assert set(volume.files) == {"a"}
    assert volume.calls.count("batch_upload") == 1


def test_tenants_get_separate_volumes() -> None:
    a, b = make("tenant-a"), make("tenant-b")
    a.write_text("secret.txt", "a's")
    assert not b.exists("secret.txt")
    assert b.list() == []
    with pytest.raises(FileNotFound):
        b.read_text("secret.txt")
    with pytest.raises(FileNotFound):
        b.delete("secret.txt")
    b.write_text("secret.txt", "b's")
    assert a.read_text("secret.txt") == "a's"
    assert set(VOLUMES) == {volume_name("my-app", "tenant-a"), volume_name("my-app", "tenant-b")}


def test_pickles_without_the_volume_handle() -> None:
    storage = make()
    storage.write_text("a.txt", "x")
    backend = storage.backend
    assert isinstance(backend, ModalVolumeBackend)
    assert backend._volume is not None
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.backend._volume is None
    assert copy.read_text("a.txt") == "x"
    assert copy.usage() == (1, 1)


def test_names_are_unique_per_app() -> None:
    names = {volume_name(app, t) for app, t in itertools.product(["a", "b"], ["t1", "t2"])}
    assert len(names) == 4
