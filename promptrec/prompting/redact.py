"""Optional redaction of contact details a customer may type into a request: e-mail addresses and phone
numbers are replaced by `[email]` / `[phone]` before the text reaches a prompt (or a model's logs).

A phone number is a run of 9 to 15 digits (the E.164 maximum) possibly broken by spaces, dots, dashes or
parentheses, optionally after a `+`; shorter runs such as years ("1999-2005") are kept. Redaction runs
after normalisation (promptrec.prompting.sanitize), so zero-width characters cannot hide an address.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_PHONE_SHAPE = re.compile(r"(?<![\w+])\+?\(?\d[\d().\s-]{6,}\d(?!\w)")
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 9, 15


def _phone_or_kept(match: re.Match[str]) -> str:
    digits = sum(char.isdigit() for char in match.group())
    return "[phone]" if MIN_PHONE_DIGITS <= digits <= MAX_PHONE_DIGITS else match.group()


def redact_contacts(text: str) -> str:
    """`text` with e-mail addresses and phone numbers replaced by placeholders."""
    return _PHONE_SHAPE.sub(_phone_or_kept, _EMAIL.sub("[email]", text))
