"""Command-line flags, ``KG_*`` environment variables and the config file, made one settings value.

Every setting kgd understands is one row of ``SETTINGS``: its flag, the
environment variable the reference gateway reads for it, its default and how to
parse it.  ``Options`` (what twistd shows as ``twistd kgd --help``) is built
from that table, and so are the README's option table and the config-file
keys, so adding a setting is adding a row.

Precedence is flag > environment > config file > default.  A value that does
not parse is a ``UsageError`` naming the setting, raised before anything
listens, so twistd exits non-zero with that reason.
"""

from __future__ import annotations

import os
import re
import tomllib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from twisted.internet import endpoints
from twisted.python import usage

from kgd.kernels.file_store import BadStoreDirectory, store_directory
from kgd.kernels.redis_url import BadStoreUrl, parse_redis_url

DEFAULT_LISTEN = "tcp:8888:interface=127.0.0.1"

_API_ALIASES = {
    "kernel_gateway.jupyter_websocket": "jupyter-websocket",
    "kernel_gateway.notebook_http": "notebook-http",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(text: str) -> bool:
    """Read a boolean from an environment variable or config string.

    The reference only accepts the exact string ``True``; kgd accepts the
    usual spellings in any case, and refuses anything else instead of reading
    a typo as false.
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_int(text: str) -> int:
    """Read a non-negative integer."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return value


def parse_optional_int(text: str) -> int | None:
    """Read a non-negative integer, where an empty string means unset."""
    return None if text.strip() == "" else parse_int(text)


def parse_seconds(text: str) -> float:
    """Read a non-negative number of seconds."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if value < 0 or value != value:
        raise ValueError(f"expected a non-negative number of seconds, got {text!r}")
    return value


def parse_list(text: str) -> list[str]:
    """Read a comma-separated list; blanks are dropped (the reference keeps ``[""]``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_text(text: str) -> str:
    """Take a string as it is."""
    return text


def parse_regex(text: str) -> str:
    """Check that a regular expression compiles; kept as text."""
    try:
        re.compile(text)
    except re.error as error:
        raise ValueError(f"not a regular expression: {text!r} ({error})") from None
    return text


def parse_api(text: str) -> str:
    """Normalise a personality name, accepting the reference's module names."""
    name = text.strip()
    return _API_ALIASES.get(name, name)


def parse_base_url(text: str) -> str:
    """Normalise a base URL to ``/segments/`` so ``/gw`` and ``/gw/`` are the same."""
    segments = [s for s in text.strip().split("/") if s]
    return "/" + "".join(s + "/" for s in segments)


def parse_size(text: str) -> int:
    """Read a size in bytes, allowing K, M and G suffixes (powers of 1024)."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, multiplier in (("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if cleaned.endswith(suffix):
            cleaned, factor = cleaned[:-1], multiplier
            break
    return parse_int(cleaned) * factor


def choice(*allowed: str, aliases: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """A parser accepting one of ``allowed`` (or an alias of one)."""

    def parse(text: str) -> str:
        value = (aliases or {}).get(text.strip(), text.strip())
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return value

    return parse


def parse_listen(text: str) -> str:
    """Check that a listen description is a Twisted server endpoint string.

    Parsing needs no live reactor, so a bad description is refused at option
    time with the endpoint parser's own reason.
    """
    try:
        endpoints.serverFromString(_NoReactor(), text)
    except Exception as error:  # the parser raises many types for bad input
        raise ValueError(f"not a server endpoint description: {text!r} ({error})") from None
    return text


def parse_kernel_store(text: str) -> str:
    """Check a ``--kernel-store`` URL: a ``file:`` URL or absolute path of a directory, ``redis://`` or ``rediss://``, or empty for none."""
    text = text.strip()
    if not text:
        return ""
    if text.startswith(("redis://", "rediss://")):
        try:
            parse_redis_url(text)
        except BadStoreUrl as error:
            raise ValueError(str(error)) from None
        return text
    try:
        store_directory(text)
    except BadStoreDirectory as error:
        raise ValueError(str(error)) from None
    return text


class _NoReactor:
    """Stands in for a reactor while an endpoint description is only parsed."""


@dataclass(frozen=True)
class Setting:
    """One configurable value: its flag, environment variable, default and parser."""

    name: str
    help: str
    default: Any
    parse: Callable[[str], Any] = parse_text
    env: str | None = None
    switch: bool = False
    repeatable: bool = False
    metavar: str | None = None

    @property
    def key(self) -> str:
        """The attribute and config-file key: the flag with ``-`` as ``_``."""
        return self.name.replace("-", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting("config", "TOML file with settings (keys are the flag names with _)", None, env="KGD_CONFIG", metavar="PATH"),
    Setting(
        "listen",
        "Twisted endpoint to serve on; repeatable (tcp:, ssl:, unix:, systemd:)",
        [DEFAULT_LISTEN],
        parse_listen,
        repeatable=True,
        metavar="ENDPOINT",
    ),
    Setting("ip", "interface to listen on when --listen is not given", None, env="KG_IP"),
    Setting("port", "port to listen on when --listen is not given", None, parse_int, env="KG_PORT"),
    Setting(
        "api",
        "personality: jupyter-websocket or notebook-http; repeatable",
        ["jupyter-websocket"],
        parse_api,
        env="KG_API",
        repeatable=True,
        metavar="NAME",
    ),
    Setting("base-url", "URL prefix of every route", "/", parse_base_url, env="KG_BASE_URL", metavar="PATH"),
    Setting("auth-token", "token every request must carry (empty: no auth)", "", env="KG_AUTH_TOKEN", metavar="TOKEN"),
    Setting(
        "default-kernel-name",
        "kernelspec used when a request names none (default: python3)",
        "",
        env="KG_DEFAULT_KERNEL_NAME",
        metavar="NAME",
    ),
    Setting(
        "force-kernel-name",
        "kernelspec used for every kernel, whatever a request names",
        "",
        env="KG_FORCE_KERNEL_NAME",
        metavar="NAME",
    ),
    Setting("list-kernels", "allow GET /api/kernels and GET /api/sessions", False, parse_bool, env="KG_LIST_KERNELS", switch=True),
    Setting("max-kernels", "most kernels alive at once (empty: no limit)", None, parse_optional_int, env="KG_MAX_KERNELS", metavar="N"),
    Setting(
        "kernel-start-timeout",
        "seconds a new kernel has to answer kernel_info",
        60.0,
        parse_seconds,
        env="KGD_KERNEL_START_TIMEOUT",
        metavar="SECONDS",
    ),
    Setting(
        "shutdown-wait-time",
        "seconds a kernel has to exit after shutdown_request before TERM, then KILL",
        5.0,
        parse_seconds,
        env="KGD_SHUTDOWN_WAIT_TIME",
        metavar="SECONDS",
    ),
    Setting("allow-origin", "Access-Control-Allow-Origin value; also admits that Origin", "", env="KG_ALLOW_ORIGIN", metavar="ORIGIN"),
    Setting(
        "allow-origin-pat",
        "regular expression admitting whole Origins (full match), echoed back",
        "",
        parse_regex,
        env="KGD_ALLOW_ORIGIN_PAT",
        metavar="REGEX",
    ),
    Setting(
        "allow-host",
        "Host name served on a loopback address besides localhost and loopback IPs (DNS rebinding); repeatable",
        [],
        repeatable=True,
        env="KGD_ALLOW_HOSTS",
        metavar="NAME",
    ),
    Setting("allow-methods", "Access-Control-Allow-Methods value", "", env="KG_ALLOW_METHODS", metavar="METHODS"),
    Setting("allow-headers", "Access-Control-Allow-Headers value", "", env="KG_ALLOW_HEADERS", metavar="HEADERS"),
    Setting("allow-credentials", "Access-Control-Allow-Credentials value", "", env="KG_ALLOW_CREDENTIALS", metavar="VALUE"),
    Setting("expose-headers", "Access-Control-Expose-Headers value", "", env="KG_EXPOSE_HEADERS", metavar="HEADERS"),
    Setting("max-age", "Access-Control-Max-Age value", "", env="KG_MAX_AGE", metavar="SECONDS"),
    Setting(
        "env-whitelist",
        "comma-separated names a kernel request may set besides KERNEL_*",
        [],
        parse_list,
        env="KG_ENV_WHITELIST",
        metavar="NAMES",
    ),
    Setting(
        "env-process-whitelist",
        "comma-separated daemon variables passed to kernels started with an env",
        [],
        parse_list,
        env="KG_ENV_PROCESS_WHITELIST",
        metavar="NAMES",
    ),
    Setting("prespawn-count", "kernels started at startup and handed out first", None, parse_optional_int, env="KG_PRESPAWN_COUNT", metavar="N"),
    Setting("seed-uri", "notebook (path or file: URL) whose code runs on every new kernel", "", env="KG_SEED_URI", metavar="URI"),
    Setting("cull-idle-timeout", "shut down kernels idle this many seconds (0: never)", 0.0, parse_seconds, env="KGD_CULL_IDLE_TIMEOUT", metavar="SECONDS"),
    Setting("cull-interval", "seconds between checks for idle kernels", 300.0, parse_seconds, env="KGD_CULL_INTERVAL", metavar="SECONDS"),
    Setting("cull-connected", "also cull idle kernels that have connections", False, parse_bool, env="KGD_CULL_CONNECTED", switch=True),
    Setting("cull-busy", "also cull kernels that are busy", False, parse_bool, env="KGD_CULL_BUSY", switch=True),
    Setting("certfile", "TLS certificate for --ip/--port (builds an ssl: endpoint)", "", env="KG_CERTFILE", metavar="PATH"),
    Setting("keyfile", "TLS private key for --certfile", "", env="KG_KEYFILE", metavar="PATH"),
    Setting("client-ca", "CA certificates that client certificates must chain to", "", env="KG_CLIENT_CA", metavar="PATH"),
    Setting("max-body-size", "largest HTTP request body accepted (413 beyond)", 100 * 1024**2, parse_size, env="KGD_MAX_BODY_SIZE", metavar="BYTES"),
    Setting("ws-ping-interval", "seconds between WebSocket keep-alive pings (0: none)", 30.0, parse_seconds, env="KG_WS_PING_INTERVAL_SECS", metavar="SECONDS"),
    Setting("max-message-size", "largest WebSocket message accepted", 10 * 1024**2, parse_size, env="KGD_MAX_MESSAGE_SIZE", metavar="BYTES"),
    Setting(
        "max-client-backlog",
        "kernel output held for a WebSocket client that is not reading, before kgd closes it",
        64 * 1024**2,
        parse_size,
        env="KGD_MAX_CLIENT_BACKLOG",
        metavar="BYTES",
    ),
    Setting(
        "session-buffer-messages",
        "messages kept for a disconnected session, for replay on reconnect",
        10000,
        parse_int,
        env="KGD_SESSION_BUFFER_MESSAGES",
        metavar="N",
    ),
    Setting(
        "session-buffer-bytes",
        "bytes kept for a disconnected session",
        64 * 1024**2,
        parse_size,
        env="KGD_SESSION_BUFFER_BYTES",
        metavar="BYTES",
    ),
    Setting(
        "session-buffer-age",
        "seconds a disconnected session's messages are kept",
        300.0,
        parse_seconds,
        env="KGD_SESSION_BUFFER_AGE",
        metavar="SECONDS",
    ),
    Setting(
        "cell-parser",
        "notebook-http annotation style: annotations or swagger",
        "annotations",
        choice(
            "annotations",
            "swagger",
            aliases={
                "kernel_gateway.notebook_http.cell.parser": "annotations",
                "kernel_gateway.notebook_http.swagger.parser": "swagger",
            },
        ),
        env="KG_CELL_PARSER",
        metavar="NAME",
    ),
    Setting(
        "allow-notebook-download",
        "notebook-http: serve the seed notebook at /_api/source",
        False,
        parse_bool,
        env="KG_ALLOW_NOTEBOOK_DOWNLOAD",
        switch=True,
    ),
    Setting("static-path", "notebook-http: folder served at /public/", "", env="KG_STATIC_PATH", metavar="PATH"),
    Setting(
        "request-timeout",
        "notebook-http: seconds a cell may run before 504 and an interrupt (0: no limit)",
        60.0,
        parse_seconds,
        env="KGD_REQUEST_TIMEOUT",
        metavar="SECONDS",
    ),
    Setting("log-format", "log lines as text or json", "text", choice("text", "json"), env="KGD_LOG_FORMAT", metavar="FORMAT"),
    Setting("metrics-public", "serve /metrics without the token", False, parse_bool, env="KGD_METRICS_PUBLIC", switch=True),
    Setting(
        "max-connections",
        "channels WebSockets served at once, beyond which an upgrade is a 503 (lowered to what the open-files limit allows)",
        10000,
        parse_int,
        env="KGD_MAX_CONNECTIONS",
        metavar="N",
    ),
    Setting(
        "kernel-store",
        "where kernels are recorded so they outlive the daemon: a file:///directory, or redis://[:password@]host:port/db "
        "shared by replicas (default: nowhere)",
        "",
        parse_kernel_store,
        env="KGD_KERNEL_STORE",
        metavar="URL",
    ),
    Setting(
        "on-stop",
        "what stopping does to kernels: shutdown, or detach (leave them for the next daemon; the default with a store)",
        "shutdown",
        choice("detach", "shutdown"),
        env="KGD_ON_STOP",
        metavar="WHAT",
    ),
    Setting(
        "redis-prefix", "with a Redis store: the prefix of every key kgd uses", "kgd:", env="KGD_REDIS_PREFIX", metavar="PREFIX"
    ),
    Setting(
        "replica-id",
        "with a Redis store: this replica's name among the others (default: host name and process id)",
        "",
        env="KGD_REPLICA_ID",
        metavar="NAME",
    ),
    Setting(
        "lease-ttl",
        "with a Redis store: seconds a replica's hold on the kernels it supervises lasts unless renewed "
        "(renewed every third of it; a dead replica's kernels are taken over after it)",
        10.0,
        parse_seconds,
        env="KGD_LEASE_TTL",
        metavar="SECONDS",
    ),
    Setting(
        "kernel-ip",
        "address local kernels bind (other replicas connect to it: with a Redis store, an address they reach)",
        "127.0.0.1",
        env="KGD_KERNEL_IP",
        metavar="IP",
    ),
    Setting(
        "runtime-dir",
        "private directory for connection files (default: a new temporary one; with --kernel-store, its runtime/ folder)",
        "",
        env="RUNTIME_DIRECTORY",
        metavar="PATH",
    ),
)

SETTINGS_BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class GatewaySettings:
    """The resolved, validated settings: one typed field per ``SETTINGS`` row.

    Only ``kgd.tap`` and ``kgd.service`` see this object: ``makeService``
    reads it once and hands each part the plain values it needs.  A misspelt
    name is a ``TypeError`` when it is built and an ``AttributeError`` when
    it is read, never a silent default.  Defaults live in ``SETTINGS`` alone
    (see ``default_config``).
    """

    config: str | None
    listen: list[str]
    ip: str | None
    port: int | None
    api: list[str]
    base_url: str
    auth_token: str
    default_kernel_name: str
    force_kernel_name: str
    list_kernels: bool
    max_kernels: int | None
    kernel_start_timeout: float
    shutdown_wait_time: float
    allow_origin: str
    allow_origin_pat: str
    allow_host: list[str]
    allow_methods: str
    allow_headers: str
    allow_credentials: str
    expose_headers: str
    max_age: str
    env_whitelist: list[str]
    env_process_whitelist: list[str]
    prespawn_count: int | None
    seed_uri: str
    cull_idle_timeout: float
    cull_interval: float
    cull_connected: bool
    cull_busy: bool
    certfile: str
    keyfile: str
    client_ca: str
    max_body_size: int
    ws_ping_interval: float
    max_message_size: int
    max_client_backlog: int
    session_buffer_messages: int
    session_buffer_bytes: int
    session_buffer_age: float
    cell_parser: str
    allow_notebook_download: bool
    static_path: str
    request_timeout: float
    log_format: str
    metrics_public: bool
    max_connections: int
    kernel_store: str
    on_stop: str
    redis_prefix: str
    replica_id: str
    lease_ttl: float
    kernel_ip: str
    runtime_dir: str

    def replace(self, **changes: Any) -> "GatewaySettings":
        """A copy with some values changed (tests); an unknown name is a ``TypeError``."""
        return dataclasses.replace(self, **changes)


if [f.name for f in dataclasses.fields(GatewaySettings)] != [s.key for s in SETTINGS]:
    raise TypeError("GatewaySettings must have one field per SETTINGS row, in the same order")


def default_config(**changes: Any) -> GatewaySettings:
    """The settings with every default from ``SETTINGS``, then the given changes."""
    values = {s.key: list(s.default) if isinstance(s.default, list) else s.default for s in SETTINGS}
    return GatewaySettings(**{**values, **changes})


def _escape_endpoint(text: str) -> str:
    """Escape the characters that are special in endpoint descriptions (IPv6 colons)."""
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as error:
        raise usage.UsageError(f"--config: cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise usage.UsageError(f"--config: {path} is not valid TOML: {error}") from None
    unknown = sorted(set(data) - set(SETTINGS_BY_KEY) - {"config"})
    if unknown:
        raise usage.UsageError(f"--config: unknown key {unknown[0]!r} in {path}")
    return data


def _from_file_value(setting: Setting, value: Any) -> Any:
    """Check and convert a value from the TOML file, whose types are already native."""
    if setting.repeatable:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in items):
            raise ValueError("expected a string or a list of strings")
        return [setting.parse(item) for item in items]
    if isinstance(setting.default, bool) or setting.parse is parse_bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if setting.parse is parse_list:
        if isinstance(value, str):
            return parse_list(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v for v in value if v]
        raise ValueError("expected a list of strings")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a {type(setting.default).__name__ if setting.default is not None else 'value'}, got {value!r}")
    if setting.parse is parse_text and not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return setting.parse(str(value))


def resolve(
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
) -> GatewaySettings:
    """Combine flags, environment and config file into validated settings.

    ``given`` holds raw flag strings (lists for repeatable flags, True for
    switches) only for the flags that were passed.
    """
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        key = setting.key
        try:
            if key in given:
                raw = given[key]
                if setting.switch:
                    value = True
                elif setting.repeatable:
                    value = [setting.parse(item) for item in raw]
                else:
                    value = setting.parse(raw)
            elif setting.env and setting.env in environ:
                raw = environ[setting.env]
                value = [setting.parse(item) for item in parse_list(raw)] if setting.repeatable else setting.parse(raw)
            elif key in file_values:
                value = _from_file_value(setting, file_values[key])
            else:
                value = list(setting.default) if isinstance(setting.default, list) else setting.default
        except ValueError as error:
            source = f"--{setting.name}" if key in given else (
                setting.env if setting.env and setting.env in environ else f"config key {key}"
            )
            raise usage.UsageError(f"{source}: {error}") from None
        values[key] = value

    if "listen" not in given and "listen" not in file_values and (values["ip"] or values["port"] is not None):
        ip = values["ip"] or "127.0.0.1"
        port = 8888 if values["port"] is None else values["port"]
        values["listen"] = [parse_listen(f"tcp:{port}:interface={_escape_endpoint(ip)}")]
    if not values["api"]:
        raise usage.UsageError("--api: no personality named")
    if values["prespawn_count"] and values["max_kernels"] is not None and values["prespawn_count"] > values["max_kernels"]:
        raise usage.UsageError(
            f"--prespawn-count: {values['prespawn_count']} kernels cannot start under --max-kernels {values['max_kernels']}"
        )
    values["api"] = list(dict.fromkeys(values["api"]))
    on_stop_given = "on_stop" in given or "KGD_ON_STOP" in environ or "on_stop" in file_values
    if values["kernel_store"] and not on_stop_given:
        values["on_stop"] = "detach"
    elif values["on_stop"] == "detach" and not values["kernel_store"]:
        raise usage.UsageError("--on-stop detach needs --kernel-store: without a record the next daemon cannot find the kernels")
    if values["lease_ttl"] < 1:
        raise usage.UsageError(f"--lease-ttl: at least 1 second (renewals go out every third of it), not {values['lease_ttl']:g}")
    return GatewaySettings(**values)


class Options(usage.Options):
    """``twistd kgd`` options; every flag also reads its ``KG_*`` variable."""

    synopsis = "[options]"
    longdesc = (
        "kgd serves Jupyter kernels over HTTP and WebSockets, a drop-in for the "
        "Jupyter Kernel Gateway. Each option can also be set by the environment "
        "variable shown, or by a key in the --config file."
    )
    optFlags = [[s.name, None, s.help + (f" [env: {s.env}]" if s.env else "")] for s in SETTINGS if s.switch]
    optParameters = [
        [s.name, None, None, s.help + (f" [env: {s.env}]" if s.env else "") + (f" [default: {s.default}]" if s.default not in (None, "", []) else "")]
        for s in SETTINGS
        if not s.switch and not s.repeatable
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self._repeated: dict[str, list[str]] = {}
        self.config: GatewaySettings = default_config()

    def opt_listen(self, description: str) -> None:
        """Twisted endpoint to serve on; repeatable (default tcp:8888:interface=127.0.0.1)"""
        self._repeated.setdefault("listen", []).append(description)

    def opt_api(self, name: str) -> None:
        """Personality to serve: jupyter-websocket (default) or notebook-http; repeatable [env: KG_API]"""
        self._repeated.setdefault("api", []).append(name)

    def opt_allow_host(self, name: str) -> None:
        """Host name served on a loopback address besides localhost and loopback IPs; repeatable [env: KGD_ALLOW_HOSTS]"""
        self._repeated.setdefault("allow_host", []).append(name)

    def postOptions(self) -> None:
        given: dict[str, Any] = dict(self._repeated)
        for setting in SETTINGS:
            if setting.repeatable:
                continue
            value = self.get(setting.name)
            if setting.switch:
                if value:
                    given[setting.key] = True
            elif value is not None:
                given[setting.key] = value
        config_path = given.get("config") or self._environ.get("KGD_CONFIG")
        file_values = _read_config_file(config_path) if config_path else {}
        self.config = resolve(given, self._environ, file_values)


def settings_table(settings: Sequence[Setting] = SETTINGS) -> str:
    """The README's option table, in Markdown, generated from ``SETTINGS``."""
    lines = [
        "| flag | environment | config key | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in settings:
        flag = f"`--{s.name}`" + (" (repeatable)" if s.repeatable else "")
        env = f"`{s.env}`" if s.env else ""
        default = "off" if s.switch else ("" if s.default in (None, "") else f"`{', '.join(s.default) if isinstance(s.default, list) else s.default}`")
        lines.append(f"| {flag} | {env} | `{s.key}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m kgd.options: print the README's option table
    print(settings_table(), end="")
