"""Packaging for kgd, the Twisted Jupyter Kernel Gateway.

The twistd plugin lives in ``twisted/plugins/kgd_plugin.py``; ``twisted.plugins``
is listed as a package (without an ``__init__.py`` of ours) so that ``twistd``
finds ``kgd`` once the distribution is installed.
"""

from setuptools import setup

setup(
    name="kgd",
    version="0.1.0",
    description="A Jupyter Kernel Gateway built as a Twisted daemon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=[
        "kgd",
        "kgd.kernels",
        "kgd.web",
        "kgd.personalities",
        "kgd.personalities.jupyter_websocket",
        "kgd.personalities.notebook_http",
        "twisted.plugins",
    ],
    package_data={
        "twisted": ["plugins/kgd_plugin.py", "plugins/kgd_personalities.py"],
        "kgd.personalities.jupyter_websocket": ["openapi.yaml"],
    },
    install_requires=[
        "twisted[tls]>=23.10,<27",
        "autobahn>=23.1,<27",
        "txzmq>=1.0,<2",
        "pyzmq>=25,<28",
        "jupyter_client>=8.6,<9",
        "nbformat>=5.9,<6",
        "klein>=23.5,<25",
        "ipykernel>=6.29,<8",
        "multipart>=1.1,<3",
        "prometheus_client>=0.20,<1",
        "PyYAML>=6,<7",
        # The shared kernel store of several replicas (--kernel-store redis://); tested with 1.6.
        "txredisapi>=1.6,<2",
        # Already installed by nbformat; kgd imports it directly to validate request bodies.
        "jsonschema>=4.18,<5",
    ],
    extras_require={
        "test": [
            "treq>=23.11,<27",
            "hypothesis>=6.100,<7",
            "websockets>=12,<18",
            "jupyter_server>=2.12,<3",
            "schemathesis>=4.1,<5",
            "openapi-spec-validator>=0.7,<1",
            "gateway_provisioners>=0.5,<1",
        ],
        # Remote kernels (Kubernetes, Docker, YARN, SSH) through kernel provisioners; run on twistd -r asyncio.
        "remote": ["gateway_provisioners>=0.5,<1"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Framework :: Jupyter",
        "Programming Language :: Python :: 3",
    ],
)
