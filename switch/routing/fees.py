"""Fee schedules of provider accounts and what a payment costs on each candidate.

The providers file carries, per account, where it acquires (``country``, ``region``), what it
settles in (``settlement_currency``, ``settlement_delay_days``), its FX markup
(``fx_markup_bps``) and fee lines (``[[accounts.NAME.fees]]``); ``switch.providers`` passes them
through untouched and :func:`build_account_routing` parses them here, once, at start-up, into
``fastpath.fees.FeeSchedule`` values (basis points become centi-basis-points, exactly).

Which line applies to a payment: the most specific one. A line may name ``payment_method``,
``currency`` and ``region`` (the card's region as seen from the account: ``domestic``, the
account's region such as ``EEA``, or ``international``); more named fields beat fewer, and at
equal count method beats currency beats region. A domestic card also matches a line for the
account's region. An account without fee lines (the sandbox) costs 0; an account with lines of
which none applies has no fee data for that payment (``fee`` None: it never wins on cost).

A card is cross-border for an account when its country is neither the account's country nor in
the account's region. The payment needs FX when its currency is not the settlement currency; the
FX cost is the markup on the converted amount, ``amount * fx_markup_bps / 10^4`` rounded half-even,
in the payment's currency (no rate is needed for it). Fixed fee parts are in ``fixed_currency``
(default: the settlement currency); when that is not the payment's currency they are converted
with ``fastpath.fx`` per payment, so rate changes apply at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import msgspec

from fastpath import fx
from fastpath.fees import FeeSchedule, FeeTable
from switch.config import ConfigError
from switch.money import is_known_currency

SANDBOX = "sandbox"

#: Regions an account may declare; a card from a member country is not cross-border for it.
REGIONS: dict[str, frozenset[str]] = {
    "EEA": frozenset(
        [
            "AT",
            "BE",
            "BG",
            "CY",
            "CZ",
            "DE",
            "DK",
            "EE",
            "ES",
            "FI",
            "FR",
            "GR",
            "HR",
            "HU",
            "IE",
            "IT",
            "LT",
            "LU",
            "LV",
            "MT",
            "NL",
            "PL",
            "PT",
            "RO",
            "SE",
            "SI",
            "SK",
            "IS",
            "LI",
            "NO",
        ]
    ),
}
DOMESTIC = "domestic"
INTERNATIONAL = "international"
LINE_REGIONS = frozenset({DOMESTIC, INTERNATIONAL, *REGIONS})

_COUNTRY = re.compile(r"[A-Z]{2}")
_METHOD = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_MAX_BPS = Decimal(10_000)
_MAX_MARKUP_BPS = 10_000
_MAX_DELAY_DAYS = 60


class FeeLineConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[accounts.NAME.fees]]`` table as written."""

    payment_method: str | None = None
    currency: str | None = None
    region: str | None = None
    percent_bps: str | int | float = 0  # a float is refused by parse_bps, with the reason
    fixed: int = 0
    fixed_currency: str | None = None
    cross_border_bps: str | int | float = 0  # a float is refused by parse_bps, with the reason
    fx_bps: str | int | float = 0  # a float is refused by parse_bps, with the reason
    min_fee: int = 0
    max_fee: int = 0


class FeeLine(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed fee line: where it applies and its schedule.

    Attributes:
        payment_method: Method it applies to (None: any).
        currency: Payment currency it applies to (None: any).
        region: Card region it applies to (None: any).
        schedule: The fees; fixed, min and max in minor units of ``fixed_currency``.
        fixed_currency: Currency of the fixed part, floor and cap (None when they are all 0).
    """

    payment_method: str | None
    currency: str | None
    region: str | None
    schedule: FeeSchedule
    fixed_currency: str | None


class AccountRouting(msgspec.Struct, frozen=True, kw_only=True):
    """What routing needs to know about one provider account."""

    name: str
    provider: str
    country: str | None = None
    region: str | None = None
    settlement_currency: str | None = None
    settlement_delay_days: int = 0
    fx_markup_bps: int = 0
    fees: tuple[FeeLine, ...] = ()
    # (method, currency, region) -> line; None in a position means "any".
    lines: dict[tuple[str | None, str | None, str | None], FeeLine] = msgspec.field(default_factory=dict)

    def card_region(self, card_country: str | None) -> str | None:
        """Return the card's region as this account sees it (None when the card has no country)."""
        if card_country is None or self.country is None:
            return None
        if card_country == self.country:
            return DOMESTIC
        region = self.region
        if region is not None and card_country in REGIONS[region]:
            return region
        return INTERNATIONAL

    def line_for(self, method: str, currency: str, card_region: str | None) -> FeeLine | None:
        """Return the most specific fee line for a payment, or None when none applies."""
        lines = self.lines
        regions: tuple[str | None, ...]
        if card_region == DOMESTIC and self.region is not None:
            regions = (DOMESTIC, self.region)
        elif card_region is not None:
            regions = (card_region,)
        else:
            regions = ()
        # Three named fields, then two, then one, then none; method > currency > region.
        for key_method, key_currency, use_region in (
            (method, currency, True),
            (method, currency, False),
            (method, None, True),
            (None, currency, True),
            (method, None, False),
            (None, currency, False),
            (None, None, True),
            (None, None, False),
        ):
            if use_region:
                for region in regions:
                    line = lines.get((key_method, key_currency, region))
                    if line is not None:
                        return line
            else:
                line = lines.get((key_method, key_currency, None))
                if line is not None:
                    return line
        return None


class AccountLike(Protocol):
    """The routing fields of a ``switch.providers.Account`` (kept structural: no import)."""

    provider: str
    country: str | None
    region: str | None
    settlement_currency: str | None
    settlement_delay_days: int
    fx_markup_bps: int
    fees: Sequence[Mapping[str, Any]]


#: The in-process sandbox: no fees, no FX, never cross-border.
SANDBOX_ROUTING = AccountRouting(name=SANDBOX, provider=SANDBOX)


def parse_bps(value: object, where: str) -> int:
    """Parse basis points (a decimal string or an int, up to 2 decimals) into centi-basis-points.

    Args:
        value: ``"1.40"``, ``"290"``, ``140``.
        where: Names the field in the error.

    Returns:
        The value in centi-basis-points (``"1.40"`` -> 140).

    Raises:
        ConfigError: A float, a malformed or negative number, more than 2 decimals, or above 100 %.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f'{where} must be basis points as a string or an integer ("1.40"), not {value!r}')
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ConfigError(f"{where} is not a decimal number: {value!r}") from None
    if not number.is_finite() or number < 0 or number > _MAX_BPS:
        raise ConfigError(f"{where} must be 0 to 10000 basis points, got {value!r}")
    scaled = number * 100
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{where} has more than 2 decimal places: {value!r}")
    return int(scaled)


def _currency(value: str | None, where: str) -> str | None:
    if value is not None and not is_known_currency(value):
        raise ConfigError(f"{where} {value!r} is not an ISO 4217 currency code")
    return value


def _line(raw: Mapping[str, Any] | FeeLineConfig, settlement: str | None, where: str) -> FeeLine:
    try:
        line = raw if isinstance(raw, FeeLineConfig) else msgspec.convert(raw, FeeLineConfig)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        raise ConfigError(f"{where}{path.rstrip('`')}: {message}") from None
    if line.payment_method is not None and not _METHOD.fullmatch(line.payment_method):
        raise ConfigError(f"{where}.payment_method {line.payment_method!r} is not a payment method name")
    currency = _currency(line.currency, f"{where}.currency")
    if line.region is not None and line.region not in LINE_REGIONS:
        raise ConfigError(f"{where}.region {line.region!r} is not one of {', '.join(sorted(LINE_REGIONS))}")
    for field in ("fixed", "min_fee", "max_fee"):
        if getattr(line, field) < 0:
            raise ConfigError(f"{where}.{field} must not be negative")
    fixed_currency = _currency(line.fixed_currency, f"{where}.fixed_currency") or settlement or currency
    if fixed_currency is None and (line.fixed or line.min_fee or line.max_fee):
        raise ConfigError(f"{where}.fixed_currency is needed: the account has no settlement_currency")
    try:
        schedule = FeeSchedule(
            percent_centibps=parse_bps(line.percent_bps, f"{where}.percent_bps"),
            fixed_minor=line.fixed,
            cross_border_centibps=parse_bps(line.cross_border_bps, f"{where}.cross_border_bps"),
            fx_centibps=parse_bps(line.fx_bps, f"{where}.fx_bps"),
            min_fee=line.min_fee,
            max_fee=line.max_fee,
        )
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from None
    return FeeLine(
        payment_method=line.payment_method,
        currency=currency,
        region=line.region,
        schedule=schedule,
        fixed_currency=fixed_currency if (line.fixed or line.min_fee or line.max_fee) else None,
    )


def account_routing(name: str, account: AccountLike) -> AccountRouting:
    """Parse one account's routing fields and fee lines.

    Args:
        name: The account name.
        account: The account as ``switch.providers.load_accounts`` returned it.

    Returns:
        The account's routing view.

    Raises:
        ConfigError: A field is invalid; the message names the account and the field
            (``account 'adyen-eu': fees.1.percent_bps ...``).
    """
    where = f"account {name!r}:"
    country = account.country
    if country is not None and not _COUNTRY.fullmatch(country):
        raise ConfigError(f"{where} country {country!r} is not a two-letter upper-case country code")
    if account.region is not None and account.region not in REGIONS:
        raise ConfigError(f"{where} region {account.region!r} is not one of {', '.join(sorted(REGIONS))}")
    settlement = _currency(account.settlement_currency, f"{where} settlement_currency")
    if not 0 <= account.settlement_delay_days <= _MAX_DELAY_DAYS:
        raise ConfigError(f"{where} settlement_delay_days must be 0 to {_MAX_DELAY_DAYS}")
    if not 0 <= account.fx_markup_bps <= _MAX_MARKUP_BPS:
        raise ConfigError(f"{where} fx_markup_bps must be 0 to {_MAX_MARKUP_BPS}")
    lines = tuple(_line(raw, settlement, f"{where} fees.{index}") for index, raw in enumerate(account.fees))
    by_key: dict[tuple[str | None, str | None, str | None], FeeLine] = {}
    for index, line in enumerate(lines):
        key = (line.payment_method, line.currency, line.region)
        if key in by_key:
            raise ConfigError(f"{where} fees.{index} applies to the same method, currency and region as another line")
        by_key[key] = line
    return AccountRouting(
        name=name,
        provider=account.provider,
        country=country,
        region=account.region,
        settlement_currency=settlement,
        settlement_delay_days=account.settlement_delay_days,
        fx_markup_bps=account.fx_markup_bps,
        fees=lines,
        lines=by_key,
    )


def build_account_routing(accounts: Mapping[str, AccountLike]) -> dict[str, AccountRouting]:
    """Parse every account of the providers file, plus the sandbox; call once at start-up.

    Raises:
        ConfigError: As :func:`account_routing`.
    """
    built = {SANDBOX: SANDBOX_ROUTING}
    for name, account in accounts.items():
        built[name] = account_routing(name, account)
    return built


def markup_cost(amount: int, markup_bps: int) -> int:
    """Return ``amount * markup_bps / 10^4`` rounded half-even (the FX markup, same currency)."""
    quotient, remainder = divmod(amount * markup_bps, 10_000)
    if 2 * remainder > 10_000 or (2 * remainder == 10_000 and quotient & 1):
        quotient += 1
    return quotient


# --- pricing many candidates ----------------------------------------------------------------------

_NO_DATA = "no fee data"


class _Foreign(msgspec.Struct, frozen=True):
    """Fixed part, floor and cap in a currency other than the payment's."""

    currency: str
    fixed: int
    min_fee: int
    max_fee: int


class _Group(msgspec.Struct, frozen=True):
    """Candidates that share the cross-border and FX flags, quoted by one ``FeeTable.rank`` call."""

    table: FeeTable
    cross_border: bool
    needs_fx: bool
    positions: tuple[int, ...]


class _Prepared(msgspec.Struct, frozen=True):
    """One (candidates, method, currency, card country) combination, prepared once."""

    accounts: tuple[AccountRouting | None, ...]
    groups: tuple[_Group, ...]
    # Per candidate: 0 when it has no fee lines (costs nothing), None when no line applies.
    base: tuple[int | None, ...]
    markups: tuple[int, ...]  # FX markup in bps, 0 when the payment needs no conversion
    foreign: tuple[tuple[int, _Foreign], ...]


class FeeBook:
    """Prices a payment on its candidates with fee tables built once per combination.

    A combination is the candidate list, the payment method, the currency and the card country
    (these decide which fee line applies and whether the card is cross-border). Its candidates
    are packed into one table per (cross-border, needs-FX) pair, so pricing 8 candidates is one to
    four compiled ``rank`` calls. Prepared combinations are cached, bounded, and rebuilt when an
    account's routing object changes.
    """

    def __init__(self, max_entries: int = 4096, rates: fx.RateTable | None = None) -> None:
        """Create an empty book.

        Args:
            max_entries: Prepared combinations kept (oldest dropped first).
            rates: Rates for fixed fees in another currency (default: ``fastpath.fx``'s table,
                looked up per payment so ``fx.set_rates`` applies at once).
        """
        self._rates = rates
        self._max = max_entries
        self._prepared: dict[tuple[tuple[str, ...], str, str, str | None], _Prepared] = {}

    def _prepare(
        self,
        candidates: tuple[str, ...],
        accounts: Mapping[str, AccountRouting],
        method: str,
        currency: str,
        card_country: str | None,
    ) -> _Prepared:
        found = tuple(accounts.get(name) for name in candidates)
        grouped: dict[tuple[bool, bool], tuple[list[FeeSchedule], list[int]]] = {}
        base: list[int | None] = []
        markups: list[int] = []
        foreign: list[tuple[int, _Foreign]] = []
        for position, account in enumerate(found):
            if account is None:
                base.append(None)
                markups.append(0)
                continue
            region = account.card_region(card_country)
            converts = account.settlement_currency is not None and account.settlement_currency != currency
            markups.append(account.fx_markup_bps if converts else 0)
            line = account.line_for(method, currency, region) if account.fees else None
            if line is None:
                base.append(None if account.fees else 0)
                continue
            base.append(0)
            schedule = line.schedule
            if line.fixed_currency is not None and line.fixed_currency != currency:
                other = _Foreign(line.fixed_currency, schedule.fixed_minor, schedule.min_fee, schedule.max_fee)
                foreign.append((position, other))
                schedule = msgspec.structs.replace(schedule, fixed_minor=0, min_fee=0, max_fee=0)
            schedules, positions = grouped.setdefault((region == INTERNATIONAL, converts), ([], []))
            schedules.append(schedule)
            positions.append(position)
        if len(self._prepared) >= self._max:
            del self._prepared[next(iter(self._prepared))]
        prepared = _Prepared(
            accounts=found,
            groups=tuple(
                _Group(FeeTable(schedules), cross_border, needs_fx, tuple(positions))
                for (cross_border, needs_fx), (schedules, positions) in grouped.items()
            ),
            base=tuple(base),
            markups=tuple(markups),
            foreign=tuple(foreign),
        )
        self._prepared[(candidates, method, currency, card_country)] = prepared
        return prepared

    def price(
        self,
        candidates: tuple[str, ...],
        accounts: Mapping[str, AccountRouting],
        amount: int,
        currency: str,
        method: str,
        card_country: str | None,
    ) -> tuple[list[int | None], list[int | None], list[str]]:
        """Return each candidate's fee and FX cost for one payment, in its currency's minor units.

        Returns:
            ``(fees, fx_costs, notes)`` in candidate order; a candidate that cannot be priced has
            None in both and says why in ``notes`` (empty otherwise).
        """
        prepared = self._prepared.get((candidates, method, currency, card_country))
        if prepared is None or not _same(prepared.accounts, candidates, accounts):
            prepared = self._prepare(candidates, accounts, method, currency, card_country)
        fees = list(prepared.base)
        for group in prepared.groups:
            positions = group.positions
            for index, fee in group.table.rank(amount, group.cross_border, group.needs_fx):
                fees[positions[index]] = fee
        fx_costs: list[int | None] = [markup_cost(amount, markup) if markup else 0 for markup in prepared.markups]
        notes = [""] * len(fees)
        if prepared.foreign:
            rates = self._rates if self._rates is not None else fx.default_table()
            for position, other in prepared.foreign:
                try:
                    fees[position] = _add_foreign(fees[position] or 0, other, currency, rates)
                except ValueError as exc:
                    fees[position] = None
                    notes[position] = str(exc)
        for position, fee in enumerate(fees):
            if fee is None:
                fx_costs[position] = None
                notes[position] = notes[position] or _NO_DATA
        return fees, fx_costs, notes


def _same(
    have: tuple[AccountRouting | None, ...], names: tuple[str, ...], accounts: Mapping[str, AccountRouting]
) -> bool:
    for position, name in enumerate(names):  # noqa: SIM110 - a plain loop beats all() on the hot path
        if have[position] is not accounts.get(name):
            return False
    return True


def _add_foreign(percentage_fee: int, other: _Foreign, currency: str, rates: fx.RateTable) -> int:
    fee = percentage_fee
    if other.fixed:
        fee += rates.convert(other.fixed, other.currency, currency).amount_out
    if other.min_fee:
        fee = max(fee, rates.convert(other.min_fee, other.currency, currency).amount_out)
    if other.max_fee:
        fee = min(fee, rates.convert(other.max_fee, other.currency, currency).amount_out)
    return fee
