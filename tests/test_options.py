"""Options: flags, ``KG_*`` environment, the TOML config file, precedence and errors.

Also checks that the README's option table is the one ``kgd.options`` generates,
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.internet import defer
from twisted.python import usage
from twisted.trial import unittest

import dataclasses

from kgd.options import SETTINGS, GatewaySettings, default_config, resolve, settings_table
from kgd.tap import Options
from tests.integration.daemon import REPO_ROOT, Daemon

README = os.path.join(REPO_ROOT, "README.md")
TABLE_START = "<!-- options:start -->"
TABLE_END = "<!-- options:end -->"


def parse(args: list[str], environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(args)
    return options


class SettingsTypeTests(unittest.TestCase):
    """The resolved settings are a typed, frozen value: a misspelt name is an error, never a default."""

    def test_one_field_per_setting(self) -> None:
        """GatewaySettings has exactly one field per SETTINGS row."""
        self.assertEqual([f.name for f in dataclasses.fields(GatewaySettings)], [s.key for s in SETTINGS])

    def test_typos_are_errors(self) -> None:
        """An unknown name fails when the settings are built, changed or read."""
        self.assertRaises(TypeError, default_config, max_kernel=3)
        self.assertRaises(TypeError, default_config().replace, max_kernel=3)
        self.assertRaises(AttributeError, getattr, default_config(), "max_kernel")

    def test_frozen(self) -> None:
        """Nothing can change the settings after they are resolved; ``replace`` makes a changed copy."""
        settings = default_config()
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, settings, "max_kernels", 3)
        self.assertEqual((settings.replace(max_kernels=3).max_kernels, settings.max_kernels), (3, None))


class FlagTests(unittest.TestCase):
    """Flags set the matching config values."""

    def test_defaults(self) -> None:
        """With nothing given, every value is the table's default."""
        self.assertEqual(parse([]).config, default_config())

    def test_flags(self) -> None:
        """Flags of each kind (number, switch, list, URL, repeatable) are parsed into typed values."""
        config = parse(
            [
                "--max-kernels", "3",
                "--list-kernels",
                "--base-url", "gw",
                "--env-whitelist", "A, B,",
                "--cull-idle-timeout", "2.5",
                "--max-body-size", "2K",
                "--listen", "tcp:0",
                "--listen", "unix:/tmp/kgd.sock",
            ]
        ).config
        self.assertEqual(config.max_kernels, 3)
        self.assertIs(config.list_kernels, True)
        self.assertEqual(config.base_url, "/gw/")
        self.assertEqual(config.env_whitelist, ["A", "B"])
        self.assertEqual(config.cull_idle_timeout, 2.5)
        self.assertEqual(config.max_body_size, 2048)
        self.assertEqual(config.listen, ["tcp:0", "unix:/tmp/kgd.sock"])

    def test_request_timeout_default(self) -> None:
        """notebook-http requests time out after 60 s unless told otherwise; an explicit 0 means no limit."""
        self.assertEqual(parse([]).config.request_timeout, 60.0)
        self.assertEqual(parse(["--request-timeout", "0"]).config.request_timeout, 0.0)
        self.assertEqual(parse([], {"KGD_REQUEST_TIMEOUT": "0"}).config.request_timeout, 0.0)

    def test_allow_host(self) -> None:
        """--allow-host repeats; KGD_ALLOW_HOSTS is a comma list; the config key takes a list; none by default."""
        self.assertEqual(parse([]).config.allow_host, [])
        self.assertEqual(parse(["--allow-host", "a.example", "--allow-host", "b.example"]).config.allow_host, ["a.example", "b.example"])
        self.assertEqual(parse([], {"KGD_ALLOW_HOSTS": "a.example, b.example"}).config.allow_host, ["a.example", "b.example"])

    def test_ip_and_port_build_the_listen_endpoint(self) -> None:
        """``--ip``/``--port`` (the reference's flags) become a TCP endpoint; an IPv6 address is escaped."""
        self.assertEqual(parse(["--port", "9000"]).config.listen, ["tcp:9000:interface=127.0.0.1"])
        self.assertEqual(parse(["--ip", "::1", "--port", "1"]).config.listen, ["tcp:1:interface=\\:\\:1"])

    def test_reference_api_names(self) -> None:
        """The reference's module names for personalities are accepted."""
        given = {"api": ["kernel_gateway.notebook_http", "kernel_gateway.jupyter_websocket"]}
        self.assertEqual(resolve(given, {}, {}).api, ["notebook-http", "jupyter-websocket"])


class EnvironmentTests(unittest.TestCase):
    """``KG_*`` variables set values the way the reference reads them."""

    def test_environment(self) -> None:
        """Variables of each kind are parsed; booleans accept the usual spellings, not only ``True``."""
        config = parse(
            [],
            {
                "KG_MAX_KERNELS": "4",
                "KG_LIST_KERNELS": "true",
                "KG_BASE_URL": "/gw/",
                "KG_ENV_PROCESS_WHITELIST": "HOME,LANG",
                "KG_API": "kernel_gateway.jupyter_websocket",
                "KG_ALLOW_ORIGIN": "*",
            },
        ).config
        self.assertEqual(config.max_kernels, 4)
        self.assertIs(config.list_kernels, True)
        self.assertEqual(config.base_url, "/gw/")
        self.assertEqual(config.env_process_whitelist, ["HOME", "LANG"])
        self.assertEqual(config.api, ["jupyter-websocket"])
        self.assertEqual(config.allow_origin, "*")

    def test_empty_integer_means_unset(self) -> None:
        """``KG_MAX_KERNELS=`` means no limit rather than an error."""
        self.assertIsNone(parse([], {"KG_MAX_KERNELS": ""}).config.max_kernels)


class ConfigFileTests(unittest.TestCase):
    """``--config kgd.toml`` uses the flag names (with ``_``) as keys."""

    def write(self, text: str) -> str:
        path = self.mktemp() + ".toml"
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_file_values(self) -> None:
        """Native TOML types are accepted for each kind of setting."""
        path = self.write(
            'max_kernels = 5\nlist_kernels = true\nenv_whitelist = ["X", "Y"]\n'
            'cull_interval = 10\nlisten = "tcp:0"\nbase_url = "gw"\n'
        )
        config = parse(["--config", path]).config
        self.assertEqual(config.max_kernels, 5)
        self.assertIs(config.list_kernels, True)
        self.assertEqual(config.env_whitelist, ["X", "Y"])
        self.assertEqual(config.cull_interval, 10.0)
        self.assertEqual(config.listen, ["tcp:0"])
        self.assertEqual(config.base_url, "/gw/")

    def test_config_path_from_environment(self) -> None:
        """``KGD_CONFIG`` names the file when ``--config`` is absent."""
        path = self.write("max_kernels = 7\n")
        self.assertEqual(parse([], {"KGD_CONFIG": path}).config.max_kernels, 7)

    def test_precedence(self) -> None:
        """Flag beats environment beats file beats default, setting by setting."""
        path = self.write("max_kernels = 1\nprespawn_count = 1\nseed_uri = \"file.ipynb\"\n")
        environ = {"KG_MAX_KERNELS": "2", "KG_PRESPAWN_COUNT": "2"}
        config = parse(["--config", path, "--max-kernels", "3"], environ).config
        self.assertEqual(config.max_kernels, 3)  # flag
        self.assertEqual(config.prespawn_count, 2)  # environment over file
        self.assertEqual(config.seed_uri, "file.ipynb")  # file over default
        self.assertEqual(config.cull_interval, 300.0)  # default

    def test_unknown_key(self) -> None:
        """An unknown key is an error naming it."""
        path = self.write("max_kernel = 1\n")
        error = self.assertRaises(usage.UsageError, parse, ["--config", path])
        self.assertIn("'max_kernel'", str(error))

    def test_wrong_types(self) -> None:
        """A value of the wrong TOML type is an error naming the key."""
        for text, key in [
            ('max_kernels = "many"\n', "max_kernels"),
            ('list_kernels = "yes"\n', "list_kernels"),
            ("env_whitelist = [1, 2]\n", "env_whitelist"),
            ("auth_token = 5\n", "auth_token"),
            ("cull_interval = -1\n", "cull_interval"),
        ]:
            error = self.assertRaises(usage.UsageError, parse, ["--config", self.write(text)])
            self.assertIn(f"config key {key}", str(error), text)

    def test_unreadable_and_invalid_files(self) -> None:
        """A missing file or broken TOML is a clear usage error."""
        error = self.assertRaises(usage.UsageError, parse, ["--config", "/nonexistent/kgd.toml"])
        self.assertIn("cannot read /nonexistent/kgd.toml", str(error))
        error = self.assertRaises(usage.UsageError, parse, ["--config", self.write("max_kernels = \n")])
        self.assertIn("not valid TOML", str(error))


class BadValueTests(unittest.TestCase):
    """A value that does not parse is refused with a one-line reason naming its source."""

    def test_bad_flag_values(self) -> None:
        """Each bad flag value names the flag."""
        for args, flag in [
            (["--max-kernels", "x"], "--max-kernels"),
            (["--max-kernels", "-1"], "--max-kernels"),
            (["--cull-idle-timeout", "soon"], "--cull-idle-timeout"),
            (["--max-body-size", "lots"], "--max-body-size"),
            (["--log-format", "xml"], "--log-format"),
            (["--listen", "nonsense:1"], "--listen"),
            (["--api", "notebook-gopher"], "--api"),
        ]:
            error = self.assertRaises(usage.UsageError, parse, args)
            self.assertTrue(str(error).startswith(flag), str(error))
            self.assertNotIn("\n", str(error))

    def test_bad_environment_values(self) -> None:
        """A bad environment value names the variable (the reference crashes with a traceback)."""
        for environ, name in [
            ({"KG_MAX_KERNELS": "x"}, "KG_MAX_KERNELS"),
            ({"KG_LIST_KERNELS": "maybe"}, "KG_LIST_KERNELS"),
            ({"KG_PORT": "http"}, "KG_PORT"),
        ]:
            error = self.assertRaises(usage.UsageError, parse, [], environ)
            self.assertTrue(str(error).startswith(name), str(error))


class TwistdExitTests(unittest.TestCase):
    """``twistd kgd`` with a bad option exits non-zero before listening."""

    timeout = 60

    @defer.inlineCallbacks
    def test_bad_value_exits_before_listening(self) -> None:
        """``--max-kernels x`` makes twistd exit non-zero with the reason, and nothing ever listens."""
        daemon = Daemon(["--max-kernels", "x"])
        try:
            yield daemon.start()
        except AssertionError:
            pass
        else:
            yield daemon.stop()
            self.fail("kgd started listening with --max-kernels x")
        self.assertIsNone(daemon.port)
        self.assertNotEqual(daemon.exit_code, 0)
        self.assertIn(b"--max-kernels: expected an integer, got 'x'", daemon.log)


class OptionTableTests(unittest.TestCase):
    """The README's option table is generated from ``SETTINGS``."""

    def test_every_setting_in_the_table(self) -> None:
        """The table has one row per setting, naming its flag, variable and key."""
        rows = settings_table().splitlines()[2:]
        self.assertEqual(len(rows), len(SETTINGS))
        for row, setting in zip(rows, SETTINGS):
            self.assertIn(f"`--{setting.name}`", row)
            self.assertIn(f"`{setting.key}`", row)
            if setting.env:
                self.assertIn(f"`{setting.env}`", row)

    def test_script_prints_the_table(self) -> None:
        """``python -m kgd.options`` prints exactly the table, for pasting into the README."""
        output = subprocess.run(
            [sys.executable, "-m", "kgd.options"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout
        self.assertEqual(output, settings_table())

    def test_readme_table_is_current(self) -> None:
        """README.md holds the generated table between its markers (regenerate with ``python -m kgd.options``)."""
        with open(README, encoding="utf-8") as f:
            text = f.read()
        if TABLE_START not in text or TABLE_END not in text:
            self.fail(f"README.md has no {TABLE_START} ... {TABLE_END} section; paste `python -m kgd.options` there")
        between = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
        if between.strip() != settings_table().strip():
            self.fail("README.md's option table differs from kgd.options.SETTINGS: paste the output of `python -m kgd.options`")


class CrossSettingTests(unittest.TestCase):
    """Settings that must agree with each other."""

    def test_prespawn_above_max_kernels(self) -> None:
        """More prespawned kernels than --max-kernels allows is refused at startup (reference test 23)."""
        error = self.assertRaises(usage.UsageError, parse, ["--prespawn-count", "3", "--max-kernels", "2"])
        self.assertEqual(str(error), "--prespawn-count: 3 kernels cannot start under --max-kernels 2")
        self.assertEqual(parse(["--prespawn-count", "2", "--max-kernels", "2"]).config.prespawn_count, 2)

    def test_origin_pattern_must_compile(self) -> None:
        """``--allow-origin-pat`` is checked as a regular expression at startup."""
        self.assertEqual(parse(["--allow-origin-pat", r"https://.*\.example"]).config.allow_origin_pat, r"https://.*\.example")
        error = self.assertRaises(usage.UsageError, parse, ["--allow-origin-pat", "(unclosed"])
        self.assertIn("--allow-origin-pat: not a regular expression", str(error))
