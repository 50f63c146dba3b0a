import os

from nao_tf.common import io


def test_large_data_is_fingerprinted_by_names_and_sizes(tmp_path, monkeypatch):
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"xyz")
    small = io.fingerprint(tmp_path)
    (tmp_path / "a").write_bytes(b"54321")  # same size, other contents
    assert io.fingerprint(tmp_path) != small
    monkeypatch.setattr(io, "FINGERPRINT_CONTENT_BYTES", 4)  # as if the data were large
    large = io.fingerprint(tmp_path)
    (tmp_path / "a").write_bytes(b"12345")
    assert io.fingerprint(tmp_path) == large  # contents are not read
    (tmp_path / "a").write_bytes(b"123456")
    assert io.fingerprint(tmp_path) != large  # sizes are
    assert io.fingerprint("") == io.fingerprint(tmp_path / "missing") == ""


def test_files_are_written_with_the_process_umask(tmp_path):
    before = os.umask(0o022)
    try:
        io.atomic_write_json(tmp_path / "best_arch.json", {"arch": "x"})
        assert (tmp_path / "best_arch.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        io.atomic_write_text(tmp_path / "private.txt", "x")
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(before)
