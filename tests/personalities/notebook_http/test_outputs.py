"""Tests for kgd.personalities.notebook_http.outputs: kernel output to HTTP response."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kgd.personalities.notebook_http.outputs import (
    ExecutionOutcome,
    HTTPResponse,
    OutputCollector,
    ResponseInfo,
    ResponseInfoError,
    build_response,
    parse_response_info,
)

IDLE = ("status", {"execution_state": "idle"})
BUSY = ("status", {"execution_state": "busy"})


def stdout(text: str) -> tuple[str, dict[str, str]]:
    """A stdout stream message."""
    return ("stream", {"name": "stdout", "text": text})


def result(data: dict[str, str]) -> tuple[str, dict[str, object]]:
    """An execute_result message."""
    return ("execute_result", {"data": data, "metadata": {}, "execution_count": 1})


def collect(messages: list[tuple[str, dict[str, object]]]) -> ExecutionOutcome:
    """Feed a complete sequence of iopub messages, in order, as the executor does as they arrive."""
    collector = OutputCollector()
    for msg_type, content in messages:
        if collector.feed(msg_type, content):
            break
    return collector.result()


def error(ename: str, evalue: str) -> tuple[str, dict[str, object]]:
    """An error message."""
    return ("error", {"ename": ename, "evalue": evalue, "traceback": ["..."]})


class CollectorTests(SynchronousTestCase):
    """What one execution's iopub messages amount to."""

    def test_feed_reports_idle(self) -> None:
        """feed() is False until the idle status, True after; later messages are ignored."""
        collector = OutputCollector()
        self.assertFalse(collector.feed(*BUSY))
        self.assertFalse(collector.feed(*stdout("a")))
        self.assertTrue(collector.feed(*IDLE))
        self.assertTrue(collector.feed(*stdout("late")))
        self.assertEqual(collector.result(), ExecutionOutcome("a"))

    def test_stdout_joined_verbatim(self) -> None:
        """stdout chunks join as sent; a stream without a name counts as stdout."""
        outcome = collect([BUSY, stdout("héllo "), ("stream", {"text": "☃\n"}), IDLE])
        self.assertEqual(outcome, ExecutionOutcome("héllo ☃\n"))

    def test_stderr_dropped(self) -> None:
        """Only stdout makes the body (test /stderr)."""
        outcome = collect(
            [stdout("I am text on stdout\n"), ("stream", {"name": "stderr", "text": "no\n"}), IDLE]
        )
        self.assertEqual(outcome.text, "I am text on stdout\n")

    def test_execute_result(self) -> None:
        """Without stdout the result's data is json.dumps'ed (test /execute_result)."""
        self.assertEqual(collect([result({"text/plain": "2"}), IDLE]).text, '{"text/plain": "2"}')

    def test_stdout_beats_result(self) -> None:
        """print('out'); 42 answers `out\\n`."""
        self.assertEqual(collect([stdout("out\n"), result({"text/plain": "42"}), IDLE]).text, "out\n")

    def test_error_beats_everything(self) -> None:
        """An error discards earlier output and has the reference's exact format."""
        outcome = collect([stdout("before\n"), error("ValueError", "boom"), IDLE])
        self.assertEqual(outcome, ExecutionOutcome("", "Error ValueError: boom \n"))

    def test_display_data_ignored(self) -> None:
        """display_data gives an empty body, as in the reference."""
        self.assertEqual(collect([("display_data", {"data": {"text/plain": "x"}}), IDLE]).text, "")

    def test_empty(self) -> None:
        """No output is an empty body; so is an empty result bundle."""
        self.assertEqual(collect([IDLE]), ExecutionOutcome())
        self.assertEqual(collect([result({}), IDLE]), ExecutionOutcome())

    def test_malformed_content(self) -> None:
        """Missing keys and odd types do not raise."""
        outcome = collect([("stream", {"name": "stdout", "text": 5}), ("error", {}), ("x", None), IDLE])  # type: ignore[list-item]
        self.assertEqual(outcome.error, "Error :  \n")

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["status", "stream", "execute_result", "error", "display_data", "?"]),
                st.dictionaries(
                    st.sampled_from(["name", "text", "data", "ename", "evalue", "execution_state"]),
                    st.one_of(st.text(), st.integers(), st.none(), st.dictionaries(st.text(), st.text())),
                ),
            )
        )
    )
    def test_never_raises(self, messages: list[tuple[str, dict[str, object]]]) -> None:
        """Any message sequence yields an outcome whose body encodes."""
        build_response(collect(messages))


class ResponseInfoTests(SynchronousTestCase):
    """Parsing what a ResponseInfo cell printed."""

    def test_status_and_headers(self) -> None:
        """Both keys are optional and other keys are ignored."""
        self.assertEqual(parse_response_info('{"status": 204}\n'), ResponseInfo(204))
        self.assertEqual(
            parse_response_info('{"headers": {"Content-Type": "application/json", "Etag": 1234567890}, "x": 1}'),
            ResponseInfo(None, (("Content-Type", "application/json"), ("Etag", "1234567890"))),
        )
        self.assertEqual(parse_response_info("{}"), ResponseInfo())

    def test_invalid(self) -> None:
        """Non-JSON, non-objects, bad statuses and unsafe headers raise ResponseInfoError."""
        for output in (
            "",
            "not json",
            "[1]",
            '{"status": "201"}',
            '{"status": true}',
            '{"status": 99}',
            '{"status": 600}',
            '{"status": null}',
            '{"headers": []}',
            '{"headers": {"Bad Name": "x"}}',
            '{"headers": {"X": "a\\r\\nSet-Cookie: evil"}}',
            '{"headers": {"X": null}}',
            '{"headers": {"X": true}}',
        ):
            self.assertRaises(ResponseInfoError, parse_response_info, output)


class BuildResponseTests(SynchronousTestCase):
    """Combining endpoint and ResponseInfo outcomes."""

    def test_defaults(self) -> None:
        """200, text/plain without charset, UTF-8 body."""
        self.assertEqual(
            build_response(ExecutionOutcome("héllo ☃")),
            HTTPResponse(200, (("Content-Type", "text/plain"),), "héllo ☃".encode()),
        )

    def test_endpoint_error(self) -> None:
        """An endpoint error is a text/plain 500 with the error text."""
        response = build_response(ExecutionOutcome("", "Error SyntaxError: bad \n"), ExecutionOutcome("{}"))
        self.assertEqual(response.status, 500)
        self.assertEqual(response.body, b"Error SyntaxError: bad \n")

    def test_response_info_applied(self) -> None:
        """Headers replace defaults case-insensitively (test /json, /etag); status applies."""
        info = ExecutionOutcome('{"status": 201, "headers": {"content-type": "application/json", "Etag": "1234567890"}}\n')
        response = build_response(ExecutionOutcome('{"hello": "world"}\n'), info)
        self.assertEqual(response.status, 201)
        self.assertEqual(response.header("Content-Type"), "application/json")
        self.assertEqual(response.header("ETAG"), "1234567890")
        self.assertEqual(len(response.headers), 2)
        self.assertEqual(response.body, b'{"hello": "world"}\n')

    def test_no_content(self) -> None:
        """A 204 (test /nocontent) or 304 never carries a body."""
        self.assertEqual(build_response(ExecutionOutcome("x"), ExecutionOutcome('{"status": 204}')).body, b"")
        self.assertEqual(build_response(ExecutionOutcome("x"), ExecutionOutcome('{"status": 304}')).body, b"")

    def test_response_info_error(self) -> None:
        """A ResponseInfo cell that raised is a 500 with its error text."""
        response = build_response(
            ExecutionOutcome("ok"), ExecutionOutcome("", "Error ZeroDivisionError: division by zero \n")
        )
        self.assertEqual((response.status, response.body), (500, b"Error ZeroDivisionError: division by zero \n"))

    def test_response_info_not_json(self) -> None:
        """Non-JSON ResponseInfo output is a 500 naming the problem (the reference sent an empty 200)."""
        response = build_response(ExecutionOutcome("ok"), ExecutionOutcome("oops\n"))
        self.assertEqual(response.status, 500)
        self.assertTrue(response.body.startswith(b"Error ResponseInfoError: ResponseInfo output is not JSON"))

    def test_lone_surrogate_body(self) -> None:
        """A lone surrogate from a kernel cannot break encoding of the body."""
        self.assertEqual(build_response(ExecutionOutcome("a\ud800")).body, b"a?")
