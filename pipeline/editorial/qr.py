"""QR codes for second-factor enrolment, drawn on the server as SVG: the only importer of segno."""

from __future__ import annotations

import io

import segno


def svg(data: str, *, title: str) -> str:
    """An inline <svg> element (no XML declaration), scaled by CSS, with a title for screen readers."""
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="svg", scale=4, border=2, xmldecl=False, svgns=True,
                                     title=title, svgclass="qr", lineclass=None, omitsize=True)
    return out.getvalue().decode("utf-8")
