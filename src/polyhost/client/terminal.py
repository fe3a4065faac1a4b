"""Text from a container or a server, made safe to show on a terminal.

A container's output is the container's to choose, and a terminal obeys what it is sent: an
escape sequence can write the user's clipboard (OSC 52), retitle the window, clear the screen,
or ask the terminal a question it answers on its own input, as if the user had typed it. So a
command that prints such text to a terminal shows every control character as a visible escape
(`\\x1b`, `\\r`), except the tab and newline that lay the text out. Both `polyhost logs` and
`polyhost top` print through here.
"""

from __future__ import annotations

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: some terminals take
# U+009B as CSI, the start of an escape sequence).
_CONTROLS = [*(c for c in range(0x20) if c not in (0x09, 0x0A)), 0x7F, *range(0x80, 0xA0)]
_VISIBLE = {code: f"\\x{code:02x}" for code in _CONTROLS} | {0x0D: "\\r"}


def visible(text: str) -> str:
    """`text` with each control character other than tab and newline shown as an escape."""
    return text.translate(_VISIBLE)
