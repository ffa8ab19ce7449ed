"""PAN hygiene for logs: anything shaped like a card number is masked in every record.

A candidate is a run of 13 to 19 digits, optionally split by single spaces or dashes; it is masked
(all but the last four digits) when any 13-19 digit window of it passes the Luhn check, so a card
number glued to other digits is caught too. Installed once by the app and ``switch serve`` on the
root logger, its handlers and the record factory, so records of every logger, and of handlers
added later (such as a JSON formatter), are masked before anything formats them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from switch.vault.cards import luhn_valid

# Digits with at most one space or dash between two digits; runs shorter than 13 digits are cheap
# to skip.
_CANDIDATE = re.compile(r"\d(?:[ -]?\d){12,}")
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _pan_positions(digits: str) -> set[int]:
    """Indexes of ``digits`` covered by some Luhn-valid window of 13 to 19 digits."""
    covered: set[int] = set()
    for start in range(len(digits) - 12):
        for length in range(13, min(19, len(digits) - start) + 1):
            if luhn_valid(digits[start : start + length]):
                covered.update(range(start, start + length))
    return covered


def _mask_candidate(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [i for i, char in enumerate(text) if char.isdigit()]
    covered = _pan_positions("".join(text[i] for i in digits))
    if not covered:
        return text
    last = max(covered)
    # Keep the last four digits of the card-like span, as PCI DSS 3.4.1 allows.
    masked = {digits[i] for i in covered if i <= last - 4}
    return "".join("*" if i in masked else char for i, char in enumerate(text))


def mask_pans(text: str) -> str:
    """Return ``text`` with every PAN-shaped number masked except its last four digits."""
    if len(text) < 13:
        return text
    return _CANDIDATE.sub(_mask_candidate, text)


def contains_pan(text: str) -> bool:
    """Return whether ``text`` holds a card number: a Luhn-valid run of 13-19 digits, split or not.

    Stricter than :func:`mask_pans` (which masks any Luhn-valid window, erring towards masking a
    log line): it decides whether a merchant's field is refused, so an order number that merely
    contains a Luhn-valid stretch passes.
    """
    if len(text) < 13:
        return False
    for match in _CANDIDATE.finditer(text):
        digits = "".join(char for char in match.group(0) if char.isdigit())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**12:
        text = str(value)
        masked = mask_pans(text)
        return value if masked == text else masked
    if isinstance(value, bytes):
        return mask_pans(value.decode("utf-8", "replace")) if len(value) >= 13 else value
    if isinstance(value, dict | list | tuple):
        text = repr(value)
        masked = mask_pans(text)
        return value if masked == text else masked
    return value


def _mask_exception(exc: BaseException) -> None:
    """Mask the arguments of a logged exception and its causes in place.

    Formatters (the JSON one too) render ``exc_info`` themselves, from the exception's arguments.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        try:
            masked = tuple(_masked(arg) for arg in current.args)
            if masked != current.args:
                current.args = masked
        except Exception:  # noqa: S110 - an exception whose args cannot be set keeps them; its text is masked below
            pass
        current = current.__cause__ or current.__context__


class PanRedactingFilter(logging.Filter):
    """Masks PAN-shaped numbers in a record's message, arguments, extras and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask PANs in ``record``: the formatted message (when it changes), extras and tracebacks.

    Idempotent (a masked number is no longer PAN-shaped), so the factory and the filters may both
    run on one record; the filters see the ``extra`` fields that the factory runs too early for.
    """
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: mask what is there, let logging report the error
        message = None
    if message is not None:
        masked = mask_pans(message)
        if masked != message:
            # The arguments are merged into the message only when one held a PAN, so structured
            # handlers keep their arguments otherwise.
            record.msg, record.args = masked, ()
    else:
        record.msg = _masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_ATTRIBUTES:
            setattr(record, name, _masked(value))
    if record.exc_info and record.exc_info[1] is not None:
        _mask_exception(record.exc_info[1])
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_pans(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_pans(record.stack_info)
    return record


_FILTER = PanRedactingFilter()


def install_pan_filter(root: logging.Logger | None = None) -> PanRedactingFilter:
    """Mask PANs in every log record of the process; safe to call more than once.

    Wraps the record factory (every logger, every handler, now and later) and adds the filter to
    the root logger and its handlers (records built by code that bypasses the factory).
    """
    root = root or logging.getLogger()
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_pan_redacting", False):

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(factory(*args, **kwargs))

        redacting_factory._pan_redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting_factory)
    for target in (root, *root.handlers):
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
    return _FILTER
