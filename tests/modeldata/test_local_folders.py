"""A `file://` folder is copied into the cache, safely, once per content (`local_tree`).

Through `ArtifactStore.fetch_and_extract`, as the deployer calls it: what comes back is the
folder a container is given, so every test looks at that folder.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyhost.modeldata import sources
from polyhost.modeldata.local_policy import Forbidden, LocalModelPolicy
from polyhost.modeldata.store import ArtifactError, ArtifactStore

MiB = 1 << 20


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed" / "model"
    (folder / "code").mkdir(parents=True)
    (folder / "empty").mkdir()
    (folder / "model.pt").write_bytes(b"weights")
    (folder / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    (folder / "code" / "serve").write_text("#!/bin/sh\n")
    os.chmod(folder / "code" / "serve", 0o4755)  # set-uid: never carried into the copy
    return folder


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(
        tmp_path / "cache",
        8 * MiB,
        max_members=50,
        local_policy=LocalModelPolicy(allowed=(tmp_path / "allowed",)),
    )


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders the store copies (one entry per copy made)."""
    made: list[Path] = []
    real = sources.copy_folder

    def counting(root_fd: int, original: Path, *args: object, **kwargs: object) -> object:
        made.append(original)
        return real(root_fd, original, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sources, "copy_folder", counting)
    return made


def tree(folder: Path) -> dict[str, str]:
    """Every entry below `folder`: a file's content, a link's target, or '<dir>'."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "<dir>"
        else:
            found[rel] = path.read_text()
    return found


def fetch(store: ArtifactStore, folder: Path) -> Path:
    return store.fetch_and_extract(f"file://{folder}", 30)


def refusal(store: ArtifactStore, folder: Path) -> str:
    with pytest.raises(ArtifactError) as error:
        fetch(store, folder)
    return str(error.value)


def test_a_folder_is_copied_read_only_into_the_cache(
    store: ArtifactStore, model: Path, tmp_path: Path
) -> None:
    copied = fetch(store, model)
    assert copied.parent == tmp_path / "cache" / "models"
    assert tree(copied) == {
        "code": "<dir>",
        "code/inference.py": "def model_fn(d):\n    return d\n",
        "code/serve": "#!/bin/sh\n",
        "empty": "<dir>",
        "model.pt": "weights",
    }
    serve = os.stat(copied / "code" / "serve").st_mode
    assert stat.S_IMODE(serve) == 0o555  # executable, read-only, no set-uid
    assert stat.S_IMODE(os.stat(copied / "model.pt").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(copied).st_mode) == 0o555


def test_the_copy_does_not_follow_later_changes_of_the_original(
    store: ArtifactStore, model: Path, copies: list[Path]
) -> None:
    first = fetch(store, model)
    assert fetch(store, model) == first and len(copies) == 1  # unchanged: not copied again
    (model / "model.pt").write_bytes(b"weights-2")
    second = fetch(store, model)
    assert second != first and len(copies) == 2
    assert (first / "model.pt").read_text() == "weights"  # running containers keep theirs
    assert (second / "model.pt").read_text() == "weights-2"


def test_a_new_entry_is_a_change(store: ArtifactStore, model: Path, copies: list[Path]) -> None:
    first = fetch(store, model)
    (model / "empty" / "new.txt").write_text("x")
    assert fetch(store, model) != first and len(copies) == 2


def test_equal_folders_share_one_copy(store: ArtifactStore, model: Path, tmp_path: Path) -> None:
    twin = tmp_path / "allowed" / "twin"
    (twin / "code").mkdir(parents=True)
    (twin / "empty").mkdir()
    for rel in ("model.pt", "code/inference.py", "code/serve"):
        (twin / rel).write_bytes((model / rel).read_bytes())
    os.chmod(twin / "code" / "serve", 0o755)
    assert fetch(store, twin) == fetch(store, model)


def test_links_inside_the_folder_are_kept_pointing_into_the_copy(
    store: ArtifactStore, model: Path
) -> None:
    (model / "latest.pt").symlink_to("model.pt")
    (model / "code" / "weights").symlink_to(model / "model.pt")  # absolute, into the folder
    copied = fetch(store, model)
    assert os.readlink(copied / "latest.pt") == "model.pt"
    assert os.readlink(copied / "code" / "weights") == "../model.pt"
    assert (copied / "code" / "weights").read_text() == "weights"


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        ("secret", "/etc/passwd", "'secret' is a symbolic link to '/etc/passwd', outside"),
        ("up", "../../outside.txt", "'up' is a symbolic link to '../../outside.txt', outside"),
        ("code/up", "../..", "'code/up' is a symbolic link to '../..', outside"),
    ],
)
def test_a_link_leading_out_of_the_folder_is_refused(
    store: ArtifactStore, model: Path, name: str, target: str, expected: str
) -> None:
    (model / name).symlink_to(target)
    assert refusal(store, model) == (
        f"Model data file://{model} was refused: {expected} the model folder; copy that file "
        "into the folder, or use s3:// model data."
    )


def test_a_chain_of_links_that_leaves_the_folder_is_refused(
    store: ArtifactStore, model: Path
) -> None:
    """Each link alone stays inside; together, `here/..` is the folder's parent."""
    (model / "here").symlink_to(".")
    (model / "out").symlink_to("here/../outside.txt")
    assert refusal(store, model) == (
        f"Model data file://{model} was refused: 'out' is a symbolic link that leads outside "
        "the model folder (through other links)."
    )


@pytest.fixture
def unix_socket(model: Path) -> Iterator[Path]:
    path = model / "code" / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        yield path


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_are_refused(
    store: ArtifactStore, model: Path, unix_socket: Path, kind: str
) -> None:
    if kind == "fifo":
        unix_socket.unlink()
        os.mkfifo(model / "code" / "agent.sock")
    what = "a FIFO (named pipe)" if kind == "fifo" else "a socket"
    assert refusal(store, model) == (
        f"Model data file://{model} was refused: 'code/agent.sock' is {what}; a model folder "
        "may hold only files, folders and symbolic links that stay inside it."
    )


def test_the_file_count_and_size_limits_of_archives_hold(tmp_path: Path, model: Path) -> None:
    small = ArtifactStore(
        tmp_path / "small-cache", 10, max_members=50, local_policy=LocalModelPolicy()
    )
    assert refusal(small, model) == (
        f"Model data file://{model} was refused: it holds more than the limit of 10 bytes "
        "(reached at 'code/inference.py')."
    )
    few = ArtifactStore(tmp_path / "few-cache", 8 * MiB, max_members=3)
    assert refusal(few, model) == (
        f"Model data file://{model} was refused: it has more than 3 files and folders."
    )


def test_a_forbidden_file_met_under_another_name_is_refused(tmp_path: Path, model: Path) -> None:
    """A hard link of the auth file inside an allowed folder is still the auth file."""
    secret = tmp_path / "principals.json"
    secret.write_text("{}")
    os.link(secret, model / "code" / "innocent.json")
    store = ArtifactStore(
        tmp_path / "cache",
        8 * MiB,
        local_policy=LocalModelPolicy(None, (Forbidden(secret, "the server's auth file"),)),
    )
    assert refusal(store, model) == (
        f"Model data file://{model} was refused: 'code/innocent.json' is the server's auth "
        "file, which is never served to a container."
    )


def test_a_folder_holding_the_cache_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache", 8 * MiB)
    assert refusal(store, tmp_path) == (
        f"Model data file://{tmp_path} was refused: {tmp_path} holds the server's model "
        "cache, which is never served to a container. Name a folder or archive that holds "
        "only the model."
    )


def test_a_link_swapped_after_create_model_is_checked_again_at_fetch(
    store: ArtifactStore, model: Path, tmp_path: Path
) -> None:
    """CreateModel saw `current` lead to an allowed folder; by deploy it leads elsewhere."""
    current = tmp_path / "allowed" / "current"
    current.symlink_to(model)
    assert (fetch(store, current) / "model.pt").read_text() == "weights"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "id_rsa").write_text("private")
    current.unlink()
    current.symlink_to(elsewhere)
    assert refusal(store, current) == (
        f"Model data file://{current} was refused: {current} (which resolves to {elsewhere}) "
        f"is outside the folders this server allows model data from ({tmp_path / 'allowed'}). "
        "Put the model under one of them, use s3:// model data, or start the server with "
        "--allow-model-dir naming its folder."
    )


def test_an_archive_is_checked_against_the_policy_too(store: ArtifactStore, tmp_path: Path) -> None:
    archive = tmp_path / "elsewhere.tar.gz"
    archive.write_bytes(b"not even a tar")
    message = refusal(store, archive)
    assert message.startswith(f"Model data file://{archive} was refused: {archive} is outside")
