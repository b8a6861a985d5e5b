"""BlobWriter: pieces held in memory within bounds, written with writev on finish;
past the bounds spilled to a file as before; the head kept for the header block."""

from __future__ import annotations

import errno
import os

import pytest

from mailet_mta.mail import Mail, MessageSource
from mailet_mta.storage import blobs as blob_module
from mailet_mta.storage.blobs import HEAD, BlobStore


def _tmp_files(store: BlobStore) -> list:
    return list(store.tmp_dir.iterdir())


def _message(size: int) -> bytes:
    head = b"Subject: held\r\nX-Long: " + b"h" * 100 + b"\r\n\r\n"
    return head + b"b" * (size - len(head))


def test_a_message_within_the_writers_bound_makes_no_file_until_finish(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000, held_per_writer=50_000)
    data = _message(30_000)
    w = store.writer()
    for start in range(0, len(data), 7000):
        w.write(data[start:start + 7000])
    assert _tmp_files(store) == [] and store.held == len(data)
    ref = w.finish_sync()
    assert ref.data is None and ref.size == len(data)
    assert store.path_for(ref.id).read_bytes() == data
    assert store.held == 0 and _tmp_files(store) == []
    assert os.stat(store.path_for(ref.id)).st_mode & 0o777 == 0o600


def test_past_the_writers_bound_the_message_spills_to_a_file_at_once(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000, held_per_writer=20_000)
    data = _message(60_000)
    w = store.writer()
    w.write(data[:15_000])
    assert _tmp_files(store) == [] and store.held == 15_000
    w.write(data[15_000:30_000])
    assert len(_tmp_files(store)) == 1 and store.held == 0
    w.write(data[30_000:])
    assert store.held == 0
    ref = w.finish_sync()
    assert store.path_for(ref.id).read_bytes() == data


def test_past_the_limit_of_all_writers_the_next_message_spills(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000, held_per_writer=50_000,
                      held_limit=60_000)
    first, second = store.writer(), store.writer()
    first.write(b"a" * 40_000)
    assert store.held == 40_000 and _tmp_files(store) == []
    second.write(b"b" * 30_000)         # 70,000 together: past the limit
    assert [p.name for p in _tmp_files(store)] == [second.id]
    assert store.held == 40_000
    first.abort()
    second.abort()
    assert store.held == 0 and _tmp_files(store) == []


def test_an_inline_message_stays_inline_whatever_the_budget(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000, held_limit=10)
    w = store.writer()
    w.write(b"x" * 600)
    w.write(b"y" * 300)
    ref = w.finish_sync()
    assert ref.data == b"x" * 600 + b"y" * 300 and _tmp_files(store) == []
    assert store.held == 0


def test_many_small_pieces_are_written_in_order_past_iov_max(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000, held_per_writer=10**6)
    pieces = [b"%05d\r\n" % i for i in range(3000)]      # > 1024 pieces: several writev
    w = store.writer()
    for piece in pieces:
        w.write(piece)
    ref = w.finish_sync()
    assert store.path_for(ref.id).read_bytes() == b"".join(pieces)


def test_a_failed_write_on_finish_leaves_no_file_and_frees_the_memory(tmp_path, monkeypatch):
    store = BlobStore(tmp_path, inline_limit=1000)
    w = store.writer()
    w.write(b"z" * 5000)

    def full(fd, buffers):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blob_module.os, "writev", full)
    with pytest.raises(OSError) as caught:
        w.finish_sync()
    assert caught.value.errno == errno.ENOSPC
    assert _tmp_files(store) == [] and store.held == 0
    assert not store.path_for(w.id).exists()


@pytest.mark.parametrize("held_per_writer", [10**6, 2000])   # held, then spilled
def test_the_head_of_a_file_blob_answers_for_its_header_block(tmp_path, held_per_writer):
    store = BlobStore(tmp_path, inline_limit=1000, held_per_writer=held_per_writer)
    data = _message(50_000)
    w = store.writer()
    for start in range(0, len(data), 1500):
        w.write(data[start:start + 1500])
    ref = w.finish_sync()
    assert ref.head == data[:HEAD]
    mail = Mail("m", message=store.source(ref.id, ref.size, None, ref.head))
    store.path_for(ref.id).unlink()          # the header block needs no file read
    assert mail.header_names() == ["subject", "x-long"]
    assert mail.header_block() == data[:data.index(b"\r\n\r\n") + 4]


def test_a_header_block_longer_than_the_head_is_read_from_the_file(tmp_path):
    store = BlobStore(tmp_path, inline_limit=1000)
    data = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 60) for i in range(400)) + b"\r\nbody\r\n"
    assert data.index(b"\r\n\r\n") > HEAD
    w = store.writer()
    w.write(data)
    ref = w.finish_sync()
    mail = Mail("m", message=MessageSource(size=ref.size, head=ref.head,
                                           loader=store.path_for(ref.id).read_bytes,
                                           opener=lambda: open(store.path_for(ref.id), "rb")))
    assert len(mail.header_names()) == 400


def test_the_default_limit_keeps_a_100_kb_mail_in_the_database(tmp_path):
    """A mail with a small attachment costs one fsync (its commit), not three: the
    shipped and the built-in limit keep 100 KB inline, a larger body goes to a file."""
    from pathlib import Path

    import yaml

    from mailet_mta.config.model import StorageConfig

    root = Path(__file__).resolve().parents[2]
    shipped = yaml.safe_load((root / "conf" / "mailet-mta.yaml").read_text())
    assert shipped["storage"]["inline_blob_limit"] == "128k"
    store = BlobStore(tmp_path, StorageConfig().inline_blob_limit)
    small, large = store.writer(), store.writer()
    small.write(_message(100 * 1024))
    large.write(_message(129 * 1024))
    assert small.finish_sync().data is not None
    ref = large.finish_sync()
    assert ref.data is None and store.path_for(ref.id).stat().st_size == 129 * 1024
