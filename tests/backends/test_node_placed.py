"""A handle says it runs on another machine by being `NodePlaced`; every other handle is local.

The deploy layer asks every handle the same three questions (`node_of`, `lost_reason`,
`is_adopted`); only a `NodePlaced` handle answers anything but "here, not lost, not adopted".
"""

from __future__ import annotations

from polyhost.backends.base import ContainerStats, is_adopted, is_node_placed, lost_reason, node_of


class Local:
    container_id = "c"
    host = "127.0.0.1"
    port = 21000
    limits_applied = "none"

    def exit_code(self) -> int | None:
        return None

    async def stop(self, grace_s: float) -> None:
        return None

    def stats(self) -> ContainerStats | None:
        return None

    def listens_on(self, port: int) -> bool | None:
        return None


class Remote(Local):
    def __init__(self, adopted: bool = False) -> None:
        self.reason: str | None = None
        self._adopted = adopted

    @property
    def node(self) -> str:
        return "10.0.0.7"

    def lost(self) -> str | None:
        return self.reason

    @property
    def adopted(self) -> bool:
        return self._adopted


def test_a_local_handle_runs_here_and_is_never_lost_nor_adopted() -> None:
    local = Local()
    assert not is_node_placed(local)
    assert (node_of(local), lost_reason(local), is_adopted(local)) == (None, None, False)


def test_a_node_placed_handle_names_its_node_and_its_loss() -> None:
    remote = Remote()
    assert is_node_placed(remote)
    assert (node_of(remote), lost_reason(remote), is_adopted(remote)) == ("10.0.0.7", None, False)
    remote.reason = "node 10.0.0.7 was lost"
    assert lost_reason(remote) == "node 10.0.0.7 was lost"
    assert is_adopted(Remote(adopted=True))
