"""``--static-path`` below ``/public/``: symlinks never lead out of the folder."""

from __future__ import annotations

import json
import os

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import static
from twisted.web.test.requesthelper import DummyRequest

from kgd.personalities.notebook_http.routes import PublicFolder


class SymlinkTests(SynchronousTestCase):
    """A link inside the folder is served only if its real path is inside the folder too."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.folder = os.path.join(base, "public")
        outside = os.path.join(base, "outside")
        os.makedirs(os.path.join(self.folder, "sub"))
        os.makedirs(outside)
        for path, text in ((os.path.join(outside, "secret.txt"), "secret"), (os.path.join(self.folder, "sub", "page.txt"), "page")):
            with open(path, "w") as f:
                f.write(text)
        os.symlink(os.path.join(outside, "secret.txt"), os.path.join(self.folder, "passwd"))
        os.symlink(outside, os.path.join(self.folder, "elsewhere"))
        os.symlink(os.path.join(self.folder, "sub", "page.txt"), os.path.join(self.folder, "alias.txt"))
        self.client = StubTreq(PublicFolder(self.folder))

    def get(self, path: str) -> tuple[int, dict]:
        response = self.successResultOf(self.client.get("http://127.0.0.1" + path))
        body = self.successResultOf(self.client.content(response))
        return response.code, json.loads(body)

    def test_link_to_a_file_outside(self) -> None:
        """A link to a file outside the folder is a JSON 403 saying why, and the file's text is not sent."""
        status, body = self.get("/passwd")
        self.assertEqual(status, 403)
        self.assertEqual(body, {"reason": "Forbidden", "message": "The path leads outside the static folder"})

    def test_link_to_a_folder_outside(self) -> None:
        """A linked folder outside is refused as a whole, whatever is asked below it."""
        for path in ("/elsewhere/secret.txt", "/elsewhere/", "/elsewhere/missing"):
            self.assertEqual(self.get(path)[0], 403, path)

    def test_link_inside_is_served(self) -> None:
        """A link whose target is inside the folder, and a plain file below a subfolder, are files to serve."""
        root = PublicFolder(self.folder)
        alias = root.getChild(b"alias.txt", DummyRequest([b"alias.txt"]))
        self.assertIsInstance(alias, static.File)
        self.assertNotIsInstance(alias, type(root.outside))
        page = root.getChild(b"sub", DummyRequest([])).getChild(b"page.txt", DummyRequest([]))
        self.assertEqual(page.path, os.path.join(self.folder, "sub", "page.txt"))
