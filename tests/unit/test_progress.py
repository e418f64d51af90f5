from __future__ import annotations

import io

from pipeline.delivery.progress import Progress


def test_plain_lines_when_not_a_terminal():
    out, t = io.StringIO(), [0.0]
    p = Progress(3000, stream=out, tty=False, interval=10, clock=lambda: t[0])
    for _ in range(3):
        t[0] += 6
        p.advance(sent=999, failed=1)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("sending: 3000/3000 failed=3 sent=2997")
    assert "\r" not in out.getvalue() and len(lines) == 3  # at 6 s, at 18 s (12 s later), and the final line


def test_bar_on_a_terminal():
    out, t = io.StringIO(), [0.0]
    p = Progress(1000, stream=out, tty=True, clock=lambda: t[0])
    t[0] = 1
    p.advance(sent=500)
    p.close()
    assert "\rsending [###############---------------]  50% 500/1000" in out.getvalue()
    assert out.getvalue().endswith("\n")
