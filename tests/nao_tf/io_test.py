from nao_tf import io


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
