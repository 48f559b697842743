"""Pure kernel rules: kernelspec choice, the request's env checks, the kernel's environment, its directory."""

from __future__ import annotations

import os

from twisted.trial import unittest

from kgd.kernels.kernel_request import (
    InvalidKernelRequest,
    choose_kernel_name,
    kernel_cwd,
    kernel_env,
    notebook_kernel_name,
    notebook_language,
    validate_env,
)

DAEMON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/kgd",
    "LANG": "C.UTF-8",
    "SECRET_DB_PASSWORD": "hunter2",
    "KG_AUTH_TOKEN": "fake-secret",
    "KG_LIST_KERNELS": "True",
    "KGD_CONFIG": "/etc/kgd.toml",
}


class NotebookMetadataTests(unittest.TestCase):
    """The one reading of a notebook's kernelspec name and language (seed check and notebook-http)."""

    def test_kernel_name(self) -> None:
        """A notebook's kernelspec name is used; a missing, empty or non-string one means none."""
        self.assertEqual(notebook_kernel_name({"metadata": {"kernelspec": {"name": "ir"}}}), "ir")
        for metadata in ({}, {"kernelspec": None}, {"kernelspec": {"name": ""}}, {"kernelspec": {"name": 3}}):
            self.assertIsNone(notebook_kernel_name({"metadata": metadata}), metadata)

    def test_language_prefers_language_info(self) -> None:
        """language_info.name (what the kernel reported) wins over the kernelspec's language, which is the fallback."""
        both = {"language_info": {"name": "scala"}, "kernelspec": {"language": "python"}}
        self.assertEqual(notebook_language({"metadata": both}), "scala")
        self.assertEqual(notebook_language({"metadata": {"kernelspec": {"language": "R"}}}), "R")
        self.assertIsNone(notebook_language({"metadata": {"language_info": {"name": 1}}}))
        self.assertIsNone(notebook_language([("code", "x = 1")]))


class KernelNameTests(unittest.TestCase):
    """Which kernelspec a request starts."""

    def test_order(self) -> None:
        """A forced name wins over the request, the request over the default, the default applies otherwise."""
        self.assertEqual(choose_kernel_name("fake-kernel", "python3", "python3"), "python3")
        self.assertEqual(choose_kernel_name("ir", "python3", ""), "ir")
        self.assertEqual(choose_kernel_name(None, "python3", ""), "python3")
        self.assertEqual(choose_kernel_name("", "python3", ""), "python3")

    def test_python_means_native(self) -> None:
        """``python`` (the kernel_gateway_demos clients' default) starts python3, as jupyter_client does."""
        self.assertEqual(choose_kernel_name("python", "ir", ""), "python3")
        self.assertEqual(choose_kernel_name("python", "python3", "ir"), "ir")


class ValidateEnvTests(unittest.TestCase):
    """A request's ``env`` must be an object of variable names to strings (else 400)."""

    def test_valid(self) -> None:
        """A proper object is returned as a plain dict."""
        self.assertEqual(validate_env({"KERNEL_FOO": "x", "_A1": ""}), {"KERNEL_FOO": "x", "_A1": ""})

    def test_not_an_object(self) -> None:
        """A list, string, number or null is refused."""
        for env in (["KERNEL_FOO"], "KERNEL_FOO=1", 3, None):
            self.assertRaises(InvalidKernelRequest, validate_env, env)

    def test_non_string_values(self) -> None:
        """Numbers, booleans, null and nested objects are refused, naming the variable."""
        for value in (1, True, None, {"a": "b"}, ["x"]):
            error = self.assertRaises(InvalidKernelRequest, validate_env, {"KERNEL_X": value})
            self.assertIn("KERNEL_X", str(error))

    def test_invalid_names(self) -> None:
        """Names that are not shell-style variable names are refused: empty, with ``=``, a digit first, spaces, newlines."""
        for name in ("", "A=B", "1ABC", "KERNEL FOO", "KERNEL_FOO\n", "KERNEL-FOO", "KERNEL_É"):
            self.assertRaises(InvalidKernelRequest, validate_env, {name: "x"})

    def test_nul_in_value(self) -> None:
        """A NUL byte cannot be passed to a process environment, so it is refused up front."""
        self.assertRaises(InvalidKernelRequest, validate_env, {"KERNEL_X": "a\0b"})

    def test_lone_surrogate_in_value(self) -> None:
        """A lone surrogate (from a JSON "\\ud800" escape) has no bytes for a process environment: refused, naming the variable."""
        error = self.assertRaises(InvalidKernelRequest, validate_env, {"KERNEL_X": "a\ud800b"})
        self.assertIn("KERNEL_X", str(error))
        self.assertEqual(validate_env({"KERNEL_X": "h\u00e9llo \U0001f600"}), {"KERNEL_X": "h\u00e9llo \U0001f600"})


class KernelEnvTests(unittest.TestCase):
    """The environment a kernel gets."""

    def test_without_env_inherits_all_but_daemon_settings(self) -> None:
        """No ``env`` key: the daemon's environment, minus every ``KG_*``/``KGD_*`` variable, plus KERNEL_GATEWAY=1."""
        env = kernel_env(DAEMON, None)
        self.assertEqual(
            env,
            {
                "PATH": "/usr/bin:/bin",
                "HOME": "/home/kgd",
                "LANG": "C.UTF-8",
                "SECRET_DB_PASSWORD": "hunter2",
                "KERNEL_GATEWAY": "1",
            },
        )

    def test_with_env_whitelists(self) -> None:
        """With ``env``: PATH, process-whitelisted daemon variables, and KERNEL_* or whitelisted request names (reference test 17)."""
        requested = {
            "KERNEL_FOO": "kernel-foo-value",
            "NOT_KERNEL": "ignored",
            "KERNEL_GATEWAY": "overridden",
            "TEST_VAR": "allowed",
        }
        env = kernel_env(DAEMON, requested, whitelist=["TEST_VAR"], process_whitelist=["HOME"])
        self.assertEqual(
            env,
            {
                "PATH": "/usr/bin:/bin",
                "HOME": "/home/kgd",
                "KERNEL_FOO": "kernel-foo-value",
                "TEST_VAR": "allowed",
                "KERNEL_GATEWAY": "1",
            },
        )

    def test_empty_env_hides_the_daemon_environment(self) -> None:
        """``{"env": {}}`` gives only PATH and KERNEL_GATEWAY: other daemon variables stay private."""
        self.assertEqual(kernel_env(DAEMON, {}), {"PATH": "/usr/bin:/bin", "KERNEL_GATEWAY": "1"})

    def test_path_only_when_whitelisted(self) -> None:
        """A client cannot replace PATH unless PATH is in --env-whitelist."""
        self.assertEqual(kernel_env(DAEMON, {"PATH": "/evil"})["PATH"], "/usr/bin:/bin")
        self.assertEqual(kernel_env(DAEMON, {"PATH": "/mine"}, whitelist=["PATH"])["PATH"], "/mine")

    def test_daemon_settings_never_reach_a_kernel(self) -> None:
        """Even whitelisted by mistake, no KG_*/KGD_* variable passes, from the daemon or from the request."""
        env = kernel_env(
            DAEMON,
            {"KG_AUTH_TOKEN": "forged", "KGD_CONFIG": "x"},
            whitelist=["KG_AUTH_TOKEN", "KGD_CONFIG"],
            process_whitelist=["KG_AUTH_TOKEN", "KG_LIST_KERNELS"],
        )
        self.assertFalse([name for name in env if name.startswith(("KG_", "KGD_"))], env)

    def test_missing_process_variables_skipped(self) -> None:
        """A process-whitelisted name the daemon does not have is simply absent."""
        self.assertNotIn("NOPE", kernel_env(DAEMON, {}, process_whitelist=["NOPE"]))

    def test_values_are_data(self) -> None:
        """Values pass through byte for byte: no shell or template expansion."""
        value = "$(rm -rf /); ${HOME} `id` 'quoted' \"dq\"\n"
        self.assertEqual(kernel_env(DAEMON, {"KERNEL_X": value})["KERNEL_X"], value)


class KernelCwdTests(unittest.TestCase):
    """The kernel's working directory for a request's ``path``."""

    def setUp(self) -> None:
        self.root = os.path.realpath(self.mktemp())
        os.makedirs(os.path.join(self.root, "a", "b"))

    def test_existing_directory(self) -> None:
        """An existing directory below the root is used."""
        self.assertEqual(kernel_cwd(self.root, "a/b"), os.path.join(self.root, "a", "b"))

    def test_missing_walks_up(self) -> None:
        """A missing path (a notebook file name) gives its nearest existing parent."""
        self.assertEqual(kernel_cwd(self.root, "a/missing/nb.ipynb"), os.path.join(self.root, "a"))

    def test_never_above_root(self) -> None:
        """``..`` and absolute paths stay at or below the root."""
        self.assertEqual(kernel_cwd(self.root, "../../etc"), self.root)
        self.assertEqual(kernel_cwd(self.root, "/etc"), self.root)
        self.assertEqual(kernel_cwd(self.root, None), self.root)
