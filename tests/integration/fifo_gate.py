"""Gates for cells that must run until the test says so: a FIFO the cell reads, released by the test.

A cell blocked on ``open(gate).read()`` is busy for exactly as long as the
test wants, on any machine however loaded, where a ``time.sleep`` of a guessed
length is either too short or wastes time; an interrupt (SIGINT) still ends it.
"""

from __future__ import annotations

import errno
import os
import tempfile

from twisted.trial.unittest import TestCase


def gate(test: TestCase) -> str:
    """A new FIFO's path, removed after the test."""
    path = os.path.join(tempfile.mkdtemp(), "gate")
    os.mkfifo(path)
    test.addCleanup(os.unlink, path)
    return path


def release(path: str) -> bool:
    """Open and close the FIFO's write end, ending the read of every cell that has it open; False if none has.

    A cell opens its end only once it runs (``execute_input`` comes before), so callers poll until True."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        if error.errno != errno.ENXIO:
            raise
        return False
    return True
