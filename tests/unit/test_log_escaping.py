"""The request log's escaping: every field one token of printable ASCII, and no two inputs logged alike."""

from __future__ import annotations

import itertools

from stevedore.web.request_log import escaped_for_log


def test_every_byte_becomes_printable_ascii_without_spaces():
    for byte in range(256):
        text = escaped_for_log(chr(byte))  # a WSGI string: one request byte per character
        assert text.isascii() and text.isprintable() and " " not in text, byte
        if 0x21 <= byte <= 0x7E and byte != 0x5C:
            assert text == chr(byte)
        else:
            assert text == f"\\x{byte:02x}"


def test_escaping_is_unambiguous():
    # A literal backslash sequence never looks like an escaped byte: the backslash itself is escaped.
    pieces = ["\\", "x", "0", "a", "\n", " ", "\xff", "%"]
    inputs = {"".join(p) for n in range(1, 4) for p in itertools.product(pieces, repeat=n)}
    outputs = {escaped_for_log(text) for text in inputs}
    assert len(outputs) == len(inputs)


def test_python_text_is_escaped_as_its_utf8_bytes():
    assert escaped_for_log("café", from_environ=False) == "caf\\xc3\\xa9"
    assert escaped_for_log("café") == "caf\\xe9"  # the same text read as a WSGI string: one byte per character
    assert escaped_for_log("\u2028", from_environ=False) == "\\xe2\\x80\\xa8"
    assert escaped_for_log("\u2028") == "\\xe2\\x80\\xa8"  # not latin-1: not from a PEP 3333 server, so UTF-8
