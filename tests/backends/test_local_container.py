"""The bookkeeping every handle of a container on this machine shares (process and Docker).

A stop runs once however many ask, the backend hears of it once, an exit waits for the
container's output to be logged (or a grace), and a restart's predecessor is found until it
stopped, never a newer run's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from polyhost.backends.base import LaunchSpec
from polyhost.backends.local_container import LiveContainers, LocalContainer


class Copier:
    def __init__(self) -> None:
        self.done = False
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


class Container(LocalContainer):
    output_grace_s = 60.0
    output_wait_s = 0.05
    output_poll_s = 0.01
    output_stuck = "its output did not end"
    logger = logging.getLogger("tests.local_container")

    def __init__(self, container_id: str, live: LiveContainers[Container] | None = None) -> None:
        spec = LaunchSpec(
            container_id=container_id,
            image="i",
            environment={},
            model_dir=None,
            host="127.0.0.1",
            port=21000,
            safe_port_range=(21001, 21009),
            log_path=Path("container.log"),
        )
        self.copier = Copier()
        super().__init__(spec, "no limits requested", self.copier, live.forget if live else None)
        self.terminations = 0
        self.code: int | None = None
        self.exited_at = 0.0

    def exit_code(self) -> int | None:
        return None if self.code is None else self._reported(self.code, self.exited_at)

    def _output_logged(self) -> bool:
        return self.copier.done

    async def _terminate(self, grace_s: float) -> None:
        self.terminations += 1
        await asyncio.sleep(0.01)
        self.code = -15
        await self._finish_output()


def test_a_stop_runs_once_and_the_backend_forgets_the_container_once_it_is_done() -> None:
    live: LiveContainers[Container] = LiveContainers()
    container = Container("c", live)
    live.add(container)
    assert live.previous("c") is container

    async def stop_twice() -> None:
        await asyncio.gather(container.stop(1.0), container.stop(1.0))

    asyncio.run(stop_twice())
    assert container.terminations == 1 and container.stopped
    assert container.copier.stopped  # the copy never ended: given up after the bound
    assert live.previous("c") is None and live.ids() == set()


def test_a_newer_run_stays_live_when_its_predecessor_stops() -> None:
    live: LiveContainers[Container] = LiveContainers()
    old, new = Container("c", live), Container("c", live)
    live.add(old)
    live.add(new)
    asyncio.run(old.stop(0.0))
    assert live.previous("c") is new


def test_an_exit_is_reported_once_its_output_is_logged() -> None:
    container = Container("c")
    container.code, container.exited_at = 3, time.monotonic()
    assert container.exit_code() is None
    container.copier.done = True
    assert container.exit_code() == 3
