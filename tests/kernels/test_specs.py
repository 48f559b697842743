"""Tests for kgd.kernels.specs: kernelspec discovery and confined resource files.

Specs are written into a temporary kernels directory (found through
``JUPYTER_PATH`` in one test, through the manager's ``kernel_dirs`` in the
rest), so the tests see exactly the specs they made.
"""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.specs import KernelSpecs, ResourceNotFound, UnknownKernelSpec, kernel_dirs
from tests.kernels.fakes import temporary_specs, write_kernelspec

LOGO = b"\x89PNG fake logo"


def write_broken_specs(kernels_dir: str) -> None:
    """Install a spec whose kernel.json is not JSON and one whose kernel.json is a list."""
    for name, text in (("broken", "{not json"), ("not-an-object", "[1, 2]")):
        os.makedirs(os.path.join(kernels_dir, name))
        with open(os.path.join(kernels_dir, name, "kernel.json"), "w") as f:
            f.write(text)


class SpecsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.kernels_dir = os.path.realpath(self.mktemp())
        self.spec_dir = write_kernelspec(
            self.kernels_dir,
            "python3",
            display_name="Python 3 (test)",
            interrupt_mode="message",
            resources={"logo-64x64.png": LOGO, "kernel.js": b"//", "notes.txt": b"not listed"},
        )
        write_kernelspec(self.kernels_dir, "other")
        self.specs = temporary_specs(self.kernels_dir)


class DiscoveryTests(SpecsTestCase):
    def test_names_sorted(self) -> None:
        """Every installed kernelspec is listed by name, sorted."""
        self.assertEqual(self.specs.names(), ["other", "python3"])

    def test_found_through_jupyter_path(self) -> None:
        """Specs installed under a JUPYTER_PATH directory are found, next to the native python3 kernel."""
        data_dir = os.path.realpath(self.mktemp())
        write_kernelspec(os.path.join(data_dir, "kernels"), "from-path")
        self.patch(os, "environ", {**os.environ, "JUPYTER_PATH": data_dir})
        names = KernelSpecs().names()
        self.assertIn("from-path", names)
        self.assertIn(NATIVE_KERNEL_NAME, names)

    def test_same_directories_as_jupyter_client(self) -> None:
        """kgd searches exactly the directories jupyter_client does, $IPYTHONDIR/kernels included."""
        ipython_dir = os.path.realpath(self.mktemp())
        self.patch(os, "environ", {**os.environ, "IPYTHONDIR": ipython_dir})
        self.assertEqual(kernel_dirs(), KernelSpecManager().kernel_dirs)
        self.assertEqual(kernel_dirs()[-1], os.path.join(ipython_dir, "kernels"))
        write_kernelspec(os.path.join(ipython_dir, "kernels"), "from-ipython-dir")
        self.assertIn("from-ipython-dir", KernelSpecs().names())

    def test_discovery_does_not_import_ipython(self) -> None:
        """Listing and reading specs does not load IPython into the daemon (about 24 MiB with IPython 8)."""
        code = (
            "import sys\n"
            "from kgd.kernels.specs import KernelSpecs\n"
            "specs = KernelSpecs()\n"
            "specs.models()\n"
            "print('IPython' in sys.modules)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(out.stdout.strip(), "False", out.stderr)

    def test_default_name(self) -> None:
        """The default kernel name is the configured one, else the native python3."""
        self.assertEqual(self.specs.default_name, NATIVE_KERNEL_NAME)
        self.assertEqual(temporary_specs(self.kernels_dir, "other").default_name, "other")

    def test_get(self) -> None:
        """get() returns the spec with its interrupt_mode; an unknown name raises UnknownKernelSpec naming it."""
        spec = self.specs.get("python3")
        self.assertEqual(spec.display_name, "Python 3 (test)")
        self.assertEqual(spec.interrupt_mode, "message")
        error = self.assertRaises(UnknownKernelSpec, self.specs.get, "nope")
        self.assertEqual(error.name, "nope")
        self.assertIn("nope", str(error))

    def test_model(self) -> None:
        """A spec's model has its name, its kernel.json content and only the logo and kernel.js/css files."""
        model = self.specs.model("python3")
        self.assertEqual(model.name, "python3")
        self.assertEqual(model.spec["display_name"], "Python 3 (test)")
        self.assertEqual(model.spec["argv"][-1], "{connection_file}")
        self.assertEqual(model.resource_files, ("kernel.js", "logo-64x64.png"))

    def test_broken_spec_skipped(self) -> None:
        """A kernel.json that is not JSON, or not an object, leaves that spec out of models() instead of failing the listing."""
        write_broken_specs(self.kernels_dir)
        self.assertEqual([m.name for m in self.specs.models()], ["other", "python3"])

    def test_broken_spec_is_unknown(self) -> None:
        """Asking for a spec whose kernel.json cannot be read raises UnknownKernelSpec saying why, and logs it."""
        write_broken_specs(self.kernels_dir)
        for name in ("broken", "not-an-object"):
            with capturedLogs() as events:
                error = self.assertRaises(UnknownKernelSpec, self.specs.get, name)
            self.assertIn(f"Kernel spec {name} cannot be read", str(error))
            self.assertEqual([e["name"] for e in events if e.get("event") == "bad_kernelspec"], [name])

    def test_installed_later_seen(self) -> None:
        """A spec installed while kgd runs shows up on the next listing."""
        write_kernelspec(self.kernels_dir, "late")
        self.assertIn("late", self.specs.names())
        self.assertEqual(self.specs.get("late").display_name, "Late")


class ResourcePathTests(SpecsTestCase):
    def test_file_in_resource_dir(self) -> None:
        """A file of the spec's directory resolves to its real path."""
        path = self.specs.resource_path("python3", "logo-64x64.png")
        self.assertEqual(path, os.path.join(self.spec_dir, "logo-64x64.png"))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), LOGO)

    def test_refused(self) -> None:
        """Parent references, absolute paths, NUL bytes, empty names, directories and missing files are refused."""
        outside = os.path.join(self.kernels_dir, "secret.txt")
        with open(outside, "w") as f:
            f.write("secret")
        for relative in (
            "../secret.txt",
            "..",
            "sub/../../secret.txt",
            "..\\secret.txt",
            outside,
            "/etc/passwd",
            "\\etc\\passwd",
            "logo-64x64.png\0.txt",
            "",
            ".",
            "missing.png",
        ):
            self.assertRaises(ResourceNotFound, self.specs.resource_path, "python3", relative)

    def test_symlink_out_refused(self) -> None:
        """A symlink inside the spec's directory that points outside it is refused."""
        os.symlink("/etc/passwd", os.path.join(self.spec_dir, "logo-link.png"))
        os.symlink(self.kernels_dir, os.path.join(self.spec_dir, "up"))
        self.assertRaises(ResourceNotFound, self.specs.resource_path, "python3", "logo-link.png")
        self.assertRaises(ResourceNotFound, self.specs.resource_path, "python3", "up/other/kernel.json")

    def test_unknown_spec(self) -> None:
        """A resource of an unknown spec raises UnknownKernelSpec."""
        self.assertRaises(UnknownKernelSpec, self.specs.resource_path, "nope", "logo-64x64.png")

    @settings(max_examples=300)
    @given(
        st.lists(
            st.sampled_from(["..", ".", "", "logo-64x64.png", "kernel.js", "up", "other", "kernel.json", "\0", "/", "\\", "x"]),
            min_size=1,
            max_size=6,
        ).map("/".join)
        | st.text(max_size=30)
    )
    def test_never_escapes(self, relative: str) -> None:
        """Whatever the requested name, a resolved resource is a regular file inside the spec's directory."""
        if not os.path.lexists(os.path.join(self.spec_dir, "up")):
            os.symlink(self.kernels_dir, os.path.join(self.spec_dir, "up"))
        try:
            path = self.specs.resource_path("python3", relative)
        except ResourceNotFound:
            return
        self.assertEqual(os.path.commonpath([self.spec_dir, path]), self.spec_dir)
        self.assertTrue(os.path.isfile(path))
