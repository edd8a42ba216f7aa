"""Input lineage: `tree_md5` reads a file's bytes once, until its size, time or inode changes."""

import hashlib
import os

from most import io


def oracle(folder) -> str:
    """The folder hash, computed from scratch: relative path and content md5 of every file, in path order."""
    digest = hashlib.md5()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0" + hashlib.md5(file.read_bytes()).hexdigest().encode())
    return digest.hexdigest()


def make_tree(root):
    (root / "a").mkdir(parents=True)
    (root / "a" / "b.bin").write_bytes(b"\x00" * 5000)
    (root / "a-c.txt").write_text("paths that sort differently as strings and as paths")
    (root / "top.json").write_text("{}")
    return root


def test_a_second_hash_of_unchanged_inputs_reads_none_of_their_bytes(tmp_path, monkeypatch):
    tree, cache = make_tree(tmp_path / "tree"), tmp_path / "cache"
    first = io.tree_md5(tree, cache)
    assert first == oracle(tree) and io.tree_md5(tree / "top.json", cache) == hashlib.md5(b"{}").hexdigest()

    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(io, "file_md5", no_reading)
    assert io.tree_md5(tree, cache) == first and io.tree_md5(tree / "top.json", cache) == hashlib.md5(b"{}").hexdigest()


def test_a_changed_file_is_hashed_again_and_only_it(tmp_path, monkeypatch):
    tree, cache = make_tree(tmp_path / "tree"), tmp_path / "cache"
    io.tree_md5(tree, cache)
    read, real = [], io.file_md5
    monkeypatch.setattr(io, "file_md5", lambda path: read.append(path.name) or real(path))
    changed = tree / "a" / "b.bin"
    changed.write_bytes(b"\x01" * 5000)  # the same size: the new modification time tells
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 1_000_000))
    (tree / "new.txt").write_text("a file that was not there")
    (tree / "top.json").unlink()
    assert io.tree_md5(tree, cache) == oracle(tree) and sorted(read) == ["b.bin", "new.txt"]


def test_an_unwritable_cache_still_gives_the_hash(tmp_path):
    tree = make_tree(tmp_path / "tree")
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder would be")
    assert io.tree_md5(tree, blocked / "lineage") == oracle(tree)
    assert not list(tmp_path.glob(".*partial*")) and blocked.read_text() == "a file where the cache folder would be"


def test_the_cache_lives_beside_the_run_outputs_unless_the_environment_moves_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(io.LINEAGE_CACHE_ENV, raising=False)
    assert io.lineage_cache_dir() == tmp_path / "results" / ".lineage"
    monkeypatch.setenv(io.LINEAGE_CACHE_ENV, str(tmp_path / "elsewhere"))
    io.tree_md5(make_tree(tmp_path / "tree"))
    assert len(list((tmp_path / "elsewhere").glob("*.json"))) == 1 and not (tmp_path / "results").exists()
