# cython: annotation_typing=False
# (annotations document the API; the C types are declared with cdef, and arguments are checked
# by the shared helpers so that both implementations raise the same errors)
"""Compiled implementation of ``fastpath.fees``; ``_fees_py.py`` is the readable reference.

The arithmetic is int64 only: ``amount * centibps`` can reach 3 * 10^21, so the amount is split
at 10^6 (``amount = hi * 10^6 + lo``) and the two partial products, each below 10^16, are
combined exactly. Errors are built by the shared helpers in ``fastpath._money`` so both
implementations raise the same ones.
"""

from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, qsort

from collections.abc import Iterable, Sequence

from fastpath._money import check_amount, check_int, overflow_error
from fastpath._types import FeeSchedule

__all__ = ["FeeSchedule", "FeeTable", "quote_fee", "rank_quotes"]

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF
cdef int64_t _MAX_AMOUNT = 1000000000000000
cdef int64_t _UNIT = 1000000

# Row layout of the packed table, one int64 each.
DEF _PERCENT = 0
DEF _FIXED = 1
DEF _CROSS = 2
DEF _FX = 3
DEF _MIN = 4
DEF _MAX = 5
DEF _WIDTH = 6
# Below this many candidates an insertion sort beats qsort's call overhead.
DEF _INSERTION_SORT_MAX = 32


ctypedef struct _Quote:
    int64_t fee
    Py_ssize_t index


cdef inline int64_t _amount(object amount) except -1:
    """Typed fast check of an amount; the shared helper raises the precise error otherwise."""
    cdef int overflow = 0
    cdef long long value
    if type(amount) is int:
        value = PyLong_AsLongLongAndOverflow(amount, &overflow)
        if overflow == 0 and 1 <= value <= _MAX_AMOUNT:
            return value
    return check_amount(amount)


cdef inline int64_t _fee(
    int64_t amount,
    int64_t centibps,
    int64_t fixed_minor,
    int64_t min_fee,
    int64_t max_fee,
    bint* overflow,
) noexcept nogil:
    # hi <= 10^9 and lo < 10^6, centibps <= 3 * 10^6: both products stay below 10^16.
    cdef int64_t hi = amount // _UNIT
    cdef int64_t lo_product = (amount % _UNIT) * centibps
    cdef int64_t quotient = hi * centibps + lo_product // _UNIT
    cdef int64_t remainder = lo_product % _UNIT
    if 2 * remainder > _UNIT or (2 * remainder == _UNIT and (quotient & 1)):
        quotient += 1
    if quotient > _INT64_MAX - fixed_minor:
        overflow[0] = True
        return 0
    cdef int64_t fee = quotient + fixed_minor
    if fee < min_fee:
        fee = min_fee
    if max_fee and fee > max_fee:
        fee = max_fee
    return fee


cdef inline void _pack(int64_t* row, object schedule):
    row[_PERCENT] = schedule.percent_centibps
    row[_FIXED] = schedule.fixed_minor
    row[_CROSS] = schedule.cross_border_centibps
    row[_FX] = schedule.fx_centibps
    row[_MIN] = schedule.min_fee
    row[_MAX] = schedule.max_fee


cdef inline int64_t _row_fee(const int64_t* row, int64_t amount, bint cross_border, bint needs_fx, bint* overflow) noexcept nogil:
    cdef int64_t centibps = row[_PERCENT]
    if cross_border:
        centibps += row[_CROSS]
    if needs_fx:
        centibps += row[_FX]
    return _fee(amount, centibps, row[_FIXED], row[_MIN], row[_MAX], overflow)


cdef int _compare_quotes(const void* left, const void* right) noexcept nogil:
    cdef const _Quote* a = <const _Quote*>left
    cdef const _Quote* b = <const _Quote*>right
    if a.fee != b.fee:
        return -1 if a.fee < b.fee else 1
    return -1 if a.index < b.index else (1 if a.index > b.index else 0)


cdef void _sort_quotes(_Quote* quotes, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef _Quote item
    if count > _INSERTION_SORT_MAX:
        qsort(quotes, count, sizeof(_Quote), _compare_quotes)
        return
    # Items arrive in index order and only move past strictly greater fees: ties keep input order.
    for i in range(1, count):
        item = quotes[i]
        j = i - 1
        while j >= 0 and quotes[j].fee > item.fee:
            quotes[j + 1] = quotes[j]
            j -= 1
        quotes[j + 1] = item


def quote_fee(object schedule, object amount, bint cross_border=False, bint needs_fx=False) -> int:
    """Return one provider's fee for one payment, in minor units of the payment currency.

    ``fee = amount * (percent [+ cross_border] [+ fx]) / 10^6 + fixed``, rounded half-even once,
    then raised to ``min_fee`` and capped at ``max_fee`` when those are set.

    Args:
        schedule: The provider's fee schedule.
        amount: The payment amount in minor units, 1 to 10^15.
        cross_border: The card was issued outside the provider's region.
        needs_fx: The payment is converted to another currency.

    Returns:
        The fee in minor units.

    Raises:
        TypeError: ``schedule`` is not a ``FeeSchedule`` or ``amount`` is not an int.
        ValueError: ``amount`` is out of range, or the fee overflows int64.
    """
    if not isinstance(schedule, FeeSchedule):
        raise TypeError(f"schedule must be a FeeSchedule, not {type(schedule).__name__}")
    cdef int64_t value = _amount(amount)
    cdef int64_t row[_WIDTH]
    cdef bint overflow = False
    _pack(row, schedule)
    cdef int64_t fee = _row_fee(row, value, cross_border, needs_fx, &overflow)
    if overflow:
        raise overflow_error(f"fee for amount {value}")
    return fee


cdef class FeeTable:
    """Candidate providers' schedules packed once into a C array, for quoting them all per payment.

    Build one per routing config (not per payment) and call ``rank`` for each authorization.
    """

    cdef int64_t* _rows
    cdef _Quote* _scratch
    cdef Py_ssize_t _count
    cdef tuple _schedules

    def __cinit__(self, schedules: Iterable[FeeSchedule]) -> None:
        self._rows = NULL
        self._scratch = NULL
        self._count = 0

    def __init__(self, schedules: Iterable[FeeSchedule]) -> None:
        """Pack the schedules.

        Args:
            schedules: One schedule per candidate; results refer to them by position.

        Raises:
            TypeError: an element is not a ``FeeSchedule``.
        """
        cdef tuple packed = tuple(schedules)
        cdef Py_ssize_t i, count = len(packed)
        for i in range(count):
            if not isinstance(packed[i], FeeSchedule):
                raise TypeError(f"schedules[{i}] must be a FeeSchedule, not {type(packed[i]).__name__}")
        # One allocation for both arrays of at least one element, so an empty table is valid.
        rows = <int64_t*>malloc(max(count, 1) * _WIDTH * sizeof(int64_t))
        scratch = <_Quote*>malloc(max(count, 1) * sizeof(_Quote))
        if rows == NULL or scratch == NULL:
            free(rows)
            free(scratch)
            raise MemoryError()
        for i in range(count):
            _pack(rows + i * _WIDTH, packed[i])
        free(self._rows)
        free(self._scratch)
        self._rows = rows
        self._scratch = scratch
        self._count = count
        self._schedules = packed

    def __dealloc__(self) -> None:
        free(self._rows)
        free(self._scratch)

    @property
    def schedules(self) -> tuple[FeeSchedule, ...]:
        """The packed schedules, in input order."""
        return self._schedules

    def __len__(self) -> int:
        return self._count

    def quote(self, object index, object amount, bint cross_border=False, bint needs_fx=False) -> int:
        """Return the fee of the candidate at ``index``; see ``quote_fee``.

        Raises:
            IndexError: ``index`` is not a position in the table.
        """
        index = check_int(index, "index")
        if not 0 <= index < self._count:
            raise IndexError(f"fee table index {index} out of range 0..{self._count - 1}")
        cdef int64_t value = _amount(amount)
        cdef bint overflow = False
        cdef int64_t fee = _row_fee(self._rows + <Py_ssize_t>index * _WIDTH, value, cross_border, needs_fx, &overflow)
        if overflow:
            raise overflow_error(f"fee for amount {value}")
        return fee

    def rank(self, object amount, bint cross_border=False, bint needs_fx=False) -> list[tuple[int, int]]:
        """Quote every candidate and rank them by fee.

        Args:
            amount: The payment amount in minor units, 1 to 10^15.
            cross_border: The card was issued outside the providers' region.
            needs_fx: The payment is converted to another currency.

        Returns:
            ``(index, fee)`` pairs sorted by fee ascending, ties in input order.

        Raises:
            ValueError: as ``quote_fee``, for the amount or for any candidate's fee.
        """
        cdef int64_t value = _amount(amount)
        cdef bint overflow = False
        cdef Py_ssize_t i, count = self._count
        cdef _Quote* quotes = self._scratch
        # No `with nogil`: releasing and retaking the GIL costs more than quoting a few rows.
        for i in range(count):
            quotes[i].fee = _row_fee(self._rows + i * _WIDTH, value, cross_border, needs_fx, &overflow)
            quotes[i].index = i
        if overflow:
            raise overflow_error(f"fee for amount {value}")
        _sort_quotes(quotes, count)
        # Built with the raw C API: the result is the only Python object this call creates.
        cdef list result = PyList_New(count)
        for i in range(count):
            pair = (quotes[i].index, quotes[i].fee)
            Py_INCREF(pair)  # PyList_SET_ITEM steals a reference; Cython keeps its own
            PyList_SET_ITEM(result, i, pair)
        return result


def rank_quotes(
    object schedules,
    object amount,
    bint cross_border=False,
    bint needs_fx=False,
) -> list[tuple[int, int]]:
    """Quote N candidate providers for one payment, cheapest first.

    Args:
        schedules: A prebuilt ``FeeTable`` (the fast way) or a sequence of schedules.
        amount: The payment amount in minor units, 1 to 10^15.
        cross_border: The card was issued outside the providers' region.
        needs_fx: The payment is converted to another currency.

    Returns:
        ``(index, fee)`` pairs sorted by fee ascending, ties in input order.
    """
    cdef FeeTable table = schedules if isinstance(schedules, FeeTable) else FeeTable(schedules)
    return table.rank(amount, cross_border, needs_fx)
