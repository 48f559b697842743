"""The twistd plugin: ``twistd kgd`` builds its service from ``kgd.tap``."""

from twisted.application.service import ServiceMaker

kgd = ServiceMaker(
    "kgd",
    "kgd.tap",
    "A Jupyter Kernel Gateway: kernels over HTTP and WebSockets",
    "kgd",
)
