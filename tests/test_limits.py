"""Tests for kgd.limits: the open-files limit raised, and the WebSockets it can carry."""

from __future__ import annotations

import errno
import resource

from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.kernel import KernelStartError
from kgd.limits import (
    FDS_PER_CONNECTION,
    RESERVED_FDS,
    UNLIMITED_CAP,
    OpenFiles,
    max_connections,
    out_of_descriptors,
    raise_open_files_limit,
)


class RaiseTests(SynchronousTestCase):
    def raised(self, soft: int, hard: int, refuse: bool = False) -> tuple[OpenFiles, list[tuple[int, int]]]:
        calls: list[tuple[int, int]] = []

        def set_(which: int, limits: tuple[int, int]) -> None:
            if refuse:
                raise ValueError("not allowed")
            calls.append(limits)

        return raise_open_files_limit(lambda which: (soft, hard), set_), calls

    def test_soft_raised_to_hard(self) -> None:
        """systemd's common 1024 soft limit is raised to the hard limit."""
        self.assertEqual(self.raised(1024, 524288), (OpenFiles(1024, 524288, 524288), [(524288, 524288)]))

    def test_unlimited_hard_is_capped_and_a_refusal_keeps_the_soft(self) -> None:
        """An unlimited hard limit becomes a finite soft one; a refused raise leaves the soft limit as it was."""
        limit, calls = self.raised(1024, resource.RLIM_INFINITY)
        self.assertEqual((limit.soft, calls), (UNLIMITED_CAP, [(UNLIMITED_CAP, resource.RLIM_INFINITY)]))
        self.assertEqual(self.raised(1024, 4096, refuse=True)[0].soft, 1024)


class CapacityTests(SynchronousTestCase):
    def test_connections_never_exceed_what_descriptors_carry(self) -> None:
        """--max-connections is lowered to the capacity; 0 means the capacity."""
        small = OpenFiles(1024, 1024, 1024)
        capacity = (1024 - RESERVED_FDS) // FDS_PER_CONNECTION
        self.assertEqual(max_connections(10000, small), capacity)
        self.assertEqual(max_connections(0, small), capacity)
        self.assertEqual(max_connections(10, small), 10)
        self.assertEqual(max_connections(100, OpenFiles(100, 100, 100)), 0)

    def test_out_of_descriptors_through_causes(self) -> None:
        """EMFILE/ENFILE anywhere in the cause chain counts, other errors do not."""
        try:
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError as cause:
                raise KernelStartError("Kernel python3 could not be launched") from cause
        except KernelStartError as error:
            self.assertTrue(out_of_descriptors(error))
        self.assertTrue(out_of_descriptors(OSError(errno.ENFILE, "File table overflow")))
        self.assertFalse(out_of_descriptors(KernelStartError("did not answer kernel_info")))
        self.assertFalse(out_of_descriptors(None))
