"""How a rejected value is shown in a 400's message.

A client that sent a wrong value must see it named (``'bad_encoding_format'``, ``5000``) to find
it in its own code; the value is shown as the client wrote it (JSON), shortened so that a
megabyte-long string cannot become a megabyte-long error message.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["quote_value"]

#: the longest rendering of a rejected value, in characters
MAX_SHOWN = 60


def quote_value(value: Any) -> str:
    """``'text'`` for a string (as pydantic's own messages quote), JSON for anything else."""
    if isinstance(value, str):
        short = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
        return repr(short)
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # a circular structure cannot come from a JSON body; be safe anyway
        text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"
