"""Owns how the web documents' XML is written: built as an ElementTree (so every text is
escaped and the document is well-formed by construction), indented, UTF-8 with a declaration."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def child(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: str) -> ET.Element:
    """A sub-element of ``parent``, with ``text`` when given."""
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = str(text)
    return element


def xml_document(root: ET.Element) -> bytes:
    ET.indent(root, space="  ")
    # The declaration written here: ElementTree's has single quotes, which some clients' parsers
    # of these documents have been known to trip on.
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode").encode() + b"\n"
    )
