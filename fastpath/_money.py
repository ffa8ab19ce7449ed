"""Limits and input checks shared by the compiled and the pure implementations.

Both implementations call these helpers (the compiled one only on its slow path, after a typed
fast check failed), so a bad input raises the same exception with the same message in both.
"""

INT64_MAX: int = 2**63 - 1
INT64_MIN: int = -(2**63)

#: Largest amount in minor units the fast path accepts. 10^15 minor units is ten trillion in a
#: two-decimal currency; the limit keeps every intermediate product inside 128 bits.
MAX_AMOUNT: int = 10**15

#: One centi-basis-point is 1/100 of a basis point, i.e. 10^-6 of the amount.
CENTIBPS_PER_UNIT: int = 1_000_000

#: A single percentage component may be at most 100 %.
MAX_CENTIBPS: int = 1_000_000

BPS_PER_UNIT: int = 10_000
MAX_MARKUP_BPS: int = 10_000


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int that fits int64.

    Args:
        value: The candidate integer.
        name: The argument name used in the error message.

    Returns:
        The value, unchanged.

    Raises:
        TypeError: ``value`` is not an int (bool is refused: it is never an amount).
        ValueError: ``value`` does not fit a signed 64-bit integer.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    if value > INT64_MAX or value < INT64_MIN:
        raise ValueError(f"{name} {value} overflows int64")
    return value


def check_amount(amount: object, name: str = "amount", minimum: int = 1) -> int:
    """Validate an amount in minor units.

    Args:
        amount: The amount, an int of minor units.
        name: The argument name used in the error message.
        minimum: The smallest accepted amount (1 for prices, 0 for counters).

    Returns:
        The amount, unchanged.

    Raises:
        TypeError: ``amount`` is not an int.
        ValueError: ``amount`` overflows int64, is below ``minimum`` or above ``MAX_AMOUNT``.
    """
    value = check_int(amount, name)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum} minor unit(s), got {value}")
    if value > MAX_AMOUNT:
        raise ValueError(f"{name} {value} exceeds the maximum of 10**15 minor units")
    return value


def check_range(value: object, name: str, low: int, high: int) -> int:
    """Validate an int parameter that must lie in ``[low, high]``.

    Args:
        value: The candidate.
        name: The argument name used in the error message.
        low: Smallest accepted value.
        high: Largest accepted value.

    Returns:
        The value, unchanged.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is outside ``[low, high]`` (or overflows int64).
    """
    checked = check_int(value, name)
    if checked < low or checked > high:
        raise ValueError(f"{name} must be between {low} and {high}, got {checked}")
    return checked


def overflow_error(what: str) -> ValueError:
    """Build the error raised when a computed result does not fit int64.

    Args:
        what: What overflowed and for which input, e.g. ``"fee for amount 5"``.

    Returns:
        The exception, for the caller to raise.
    """
    return ValueError(f"{what} overflows int64")
