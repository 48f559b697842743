"""kgd: a Jupyter Kernel Gateway built as a Twisted daemon.

The package version is what ``GET /api`` reports, so that clients see the
gateway they talk to rather than the version of some library beneath it.
"""

__version__ = "0.1.0"
