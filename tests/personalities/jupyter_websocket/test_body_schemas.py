"""Request bodies are checked against the schemas the OpenAPI document publishes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kgd.personalities.jupyter_websocket.body_schemas import validate_body
from kgd.personalities.jupyter_websocket.openapi import document
from kgd.web.errors import HTTPError


class ValidateBodyTests(SynchronousTestCase):
    def test_every_request_body_schema_is_usable(self) -> None:
        """Each schema a documented requestBody names accepts {} or answers a 400, never raises anything else."""
        for path in document()["paths"].values():
            for operation in path.values():
                if not isinstance(operation, dict) or "requestBody" not in operation:
                    continue
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                try:
                    validate_body(ref.rsplit("/", 1)[1], {})
                except HTTPError as error:
                    self.assertEqual(error.status, 400)

    def test_nullable_fields_accept_null(self) -> None:
        """A field the document marks nullable accepts null; one it does not is refused naming the field."""
        validate_body("KernelStart", {"name": None, "path": None, "kernel_id": None})
        validate_body("SessionCreate", {"path": "p", "type": "notebook", "kernel": {"name": None, "id": None}})
        error = self.assertRaises(HTTPError, validate_body, "SessionCreate", {"path": "p", "type": "t", "kernel": None})
        self.assertEqual((error.status, error.message), (400, "kernel: None is not of type 'object'"))

    def test_nested_fields_named_by_path(self) -> None:
        """An error inside a nested object names the whole path to it (env values, the session's kernel)."""
        error = self.assertRaises(HTTPError, validate_body, "KernelStart", {"env": {"KERNEL_A": 1}})
        self.assertEqual(error.message, "env/KERNEL_A: 1 is not of type 'string'")
        error = self.assertRaises(HTTPError, validate_body, "SessionUpdate", {"kernel": {"id": 7}})
        self.assertEqual(error.message, "kernel/id: 7 is not of type 'string', 'null'")
