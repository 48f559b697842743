"""KERNEL_* values reach provisioners as data: what passes cannot change a launch command or a manifest.

The oracles are the real consumers: gateway-provisioners' SSH provisioner
builds its remote shell command (``_build_startup_command``) and bash runs
the exports it wrote; the YARN launcher's ``eval`` of Spark options is
replayed in bash; its Kubernetes launcher's pod template is rendered
the way that launcher does (values loaded as YAML, then Jinja) and parsed.
For any value ``check_provisioner_env`` lets through, bash must see exactly
that value and nothing else must run, and the manifest must keep its shape.
"""

from __future__ import annotations

import os
import subprocess
import types
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from kgd.kernels.provisioner_env import UnsafeProvisionerEnv, check_provisioner_env, unsafe_reason

try:
    import gateway_provisioners
    import jinja2
    from gateway_provisioners.distributed import DistributedProvisioner
except ImportError as error:  # pragma: no cover - the test extra installs both
    gateway_provisioners = None
    SKIP = f"gateway_provisioners or jinja2 is not installed: {error}"
else:
    SKIP = None

# Loaded as YAML by the Kubernetes launcher, this becomes a string whose quote and
# newlines end the namespace field and add a key to the pod's metadata.
YAML_ATTACK = '"x\\"\\n  hostNetwork: true\\n  y: \\""'

ATTACKS = [
    '"; touch /tmp/kgd-pwned; "',
    "$(touch /tmp/kgd-pwned)",
    "`touch /tmp/kgd-pwned`",
    "x\ntouch /tmp/kgd-pwned",
    "ada\\",
    "a; b",
    "a && b",
    "a | b",
    "'quoted'",
    YAML_ATTACK,
    "{{ 7*7 }}",
    "[1, 2]",
    "{a: b}",
    "a: b",
    "a:",
    "- item",
    "@ref",
    "*alias",
    "&anchor x",
    "!!python/object x",
    "a # comment",
    " - x",
    "=",
    ",a",
    "tab\there",
]

PLAIN = ["ada", "ada lovelace", "user@example.org", "--conf spark.a=b --conf c=d", "a:b", "1:30", "/home/ada", "-x", "éèà"]


def ssh_startup_command(username: str) -> str:
    """The remote shell command gateway-provisioners' SSH provisioner builds for this KERNEL_USERNAME."""
    stand_in = types.SimpleNamespace(ip="203.0.113.9", kernel_spec=types.SimpleNamespace(env={"SPEC_VAR": "v"}), kernel_log=None)
    env = {"KERNEL_ID": "0b5c3f42-7a4e-4d1e-9d5e-0123456789ab", "KERNEL_USERNAME": username}
    return DistributedProvisioner._build_startup_command(stand_in, ["python", "launch.py"], env=env)


def exports_seen_by_bash(command: str) -> str:
    """Run the export prefix of an SSH startup command in bash and print what KERNEL_USERNAME became."""
    exports = command.split("nohup", 1)[0]
    result = subprocess.run(
        ["bash", "-c", exports + 'printf "%s" "$KERNEL_USERNAME"'], capture_output=True, env={"PATH": os.environ["PATH"]}, check=True
    )
    return result.stdout.decode()


def words_after_eval(value: str) -> list[str]:
    """The words bash sees when a script ``eval``s a value, as the YARN launcher's run.sh does with SPARK_OPTS."""
    script = 'eval "set -- $VALUE"; for word in "$@"; do printf "%s\\n" "$word"; done'
    result = subprocess.run(["bash", "-c", script], capture_output=True, env={"PATH": os.environ["PATH"], "VALUE": value}, check=True)
    return result.stdout.decode().splitlines()


def pod_manifest(values: dict[str, str]) -> Any:
    """The Kubernetes launcher's pod manifest for these KERNEL_* values, rendered as that launcher does."""
    template_dir = os.path.join(os.path.dirname(gateway_provisioners.__file__), "kernel-launchers", "kubernetes", "scripts")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), trim_blocks=True, lstrip_blocks=True)
    keywords = {name.lower(): yaml.safe_load(value) for name, value in values.items()}
    return list(yaml.safe_load_all(env.get_template("kernel-pod.yaml.j2").render(**keywords)))


def shape(node: Any) -> Any:
    """The structure of parsed YAML: keys and nesting, with every scalar replaced by None."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(item) for item in node]
    return None


def manifest_values(value: str, fields: tuple[str, ...] = ("NAMESPACE", "IMAGE", "SERVICE_ACCOUNT_NAME")) -> dict[str, str]:
    """Client-style KERNEL_* values for the pod template, ``value`` in each of ``fields``."""
    values = {"KERNEL_POD_NAME": "kernel-1", "KERNEL_ID": "1", "KERNEL_NAMESPACE": "ns", "KERNEL_IMAGE": "img", "KERNEL_SERVICE_ACCOUNT_NAME": "sa"}
    values.update({f"KERNEL_{field}": value for field in fields})
    return values


class CheckTests(unittest.TestCase):
    """The rule itself."""

    def test_attacks_refused(self) -> None:
        """Shell and YAML syntax in a KERNEL_* value is refused, naming the variable."""
        for attack in ATTACKS:
            error = self.assertRaises(UnsafeProvisionerEnv, check_provisioner_env, {"KERNEL_USERNAME": attack})
            self.assertIn("KERNEL_USERNAME", str(error))

    def test_plain_words_pass(self) -> None:
        """Names, spaces, e-mail addresses, Spark options and paths pass; other variables are not checked."""
        for value in PLAIN:
            self.assertIsNone(unsafe_reason(value), value)
        check_provisioner_env({"KERNEL_EXTRA_SPARK_OPTS": "--conf a=b", "PATH": "$HOME;x", "MY_VAR": "`x`"})


class ConsumerTests(unittest.TestCase):
    """Accepted values stay data in gateway-provisioners' real command line and manifest."""

    skip = SKIP

    def test_attacks_change_the_command(self) -> None:
        """The oracle can fail: a refused value really does escape the SSH provisioner's quoting."""
        self.assertNotEqual(exports_seen_by_bash(ssh_startup_command("$(echo pwned)")), "$(echo pwned)")
        self.assertEqual(words_after_eval("--conf a=b; echo pwned"), ["pwned", "--conf", "a=b"])
        self.assertNotEqual(shape(pod_manifest(manifest_values(YAML_ATTACK, ("NAMESPACE",)))), shape(pod_manifest(manifest_values("x"))))

    def test_plain_values_are_data(self) -> None:
        """Each plain value reaches bash unchanged and leaves the pod manifest's shape alone."""
        baseline = shape(pod_manifest(manifest_values("plain")))
        for value in PLAIN:
            self.assertEqual(exports_seen_by_bash(ssh_startup_command(value)), value)
            self.assertEqual(shape(pod_manifest(manifest_values(value))), baseline)

    @settings(max_examples=150, deadline=None)
    @given(st.text(min_size=1, max_size=24))
    def test_anything_accepted_is_data(self, value: str) -> None:
        """For any text: either refused, or bash sees exactly it (quoted or eval'd) and the manifest keeps its shape."""
        if unsafe_reason(value) is not None:
            self.assertRaises(UnsafeProvisionerEnv, check_provisioner_env, {"KERNEL_X": value})
            return
        self.assertEqual(exports_seen_by_bash(ssh_startup_command(value)), value)
        self.assertEqual(words_after_eval(value), value.split())
        self.assertEqual(shape(pod_manifest(manifest_values(value))), shape(pod_manifest(manifest_values("plain"))))
