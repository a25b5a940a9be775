"""The supervisor's repository-control bookkeeping, driven through real pipes (no worker processes):
what a restarted worker replays must be what the other workers really did."""

from __future__ import annotations

import multiprocessing as mp

from app.config import Settings
from app.workers.supervisor import Supervisor, Worker


def supervisor_with_two_workers() -> tuple[Supervisor, list]:
    sup = Supervisor(Settings(), count=2)
    ends = []
    for i in range(2):
        ours, theirs = mp.Pipe()
        sup.workers[i] = Worker(i, mp.current_process(), ours, 0.0, first=False)
        ends.append(theirs)
    return sup, ends


def ask(sup: Supervisor, ends: list, origin: int, req: str, op: str, name: str, ok_at_origin: bool) -> None:
    ends[origin].send(("control", req, op, name))
    sup.receive(sup.workers[origin])
    for i, end in enumerate(ends):
        assert end.recv() == ("apply", req, op, name)
        end.send(("done", req, ok_at_origin if i == origin else True))
        sup.receive(sup.workers[i])
    assert ends[origin].recv() == ("applied", req)


def test_a_failed_repeat_keeps_the_operation_that_worked_for_replay():
    sup, ends = supervisor_with_two_workers()
    ask(sup, ends, 0, "0.1.0", "unload", "m", ok_at_origin=True)
    assert sup.control_log == {"m": ("unload", "0.1.0")}
    ask(sup, ends, 1, "1.2.0", "unload", "m", ok_at_origin=False)  # e.g. NotFound: already unloaded
    assert sup.control_log == {"m": ("unload", "0.1.0")}, "a restarted worker must still unload m"
    ask(sup, ends, 0, "0.1.1", "load", "nope", ok_at_origin=False)  # never worked: nothing to replay
    assert "nope" not in sup.control_log
