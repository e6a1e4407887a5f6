"""What the shop's columns can hold, checked by the API schemas and again by every statement.

PostgreSQL refuses some values outright (a NUL character, a lone surrogate, an
id past int4, a price past numeric(10, 2)) and silently changes others (a third
decimal place is rounded away, NaN is stored as is). Either way the caller
learns too late, or never: these checks refuse such values first, in one line
that says what to change.
"""

import re
from decimal import Decimal

MAX_ID = 2**31 - 1  # serial ids are int4
EMAIL_LENGTH = 254
NAME_LENGTH = 100
DESCRIPTION_LENGTH = 2000
MONEY_PLACES = 2
MAX_MONEY = Decimal("99999999.99")  # numeric(10, 2)
# NUL: text columns cannot hold it. Lone surrogates: no UTF-8 encoding exists for them.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidValueError(ValueError):
    """A value the database cannot store as given."""


def storable_text(value: str) -> str:
    """``value``, unless it holds a character PostgreSQL cannot store."""
    found = UNSTORABLE.search(value)
    if found:
        raise InvalidValueError(
            f"contains U+{ord(found.group()):04X}, which PostgreSQL cannot store; remove it"
        )
    return value


def check_text(field: str, value: str, max_length: int, min_length: int = 1) -> str:
    """``value`` if it is storable text of ``min_length`` to ``max_length`` characters."""
    if not min_length <= len(value) <= max_length:
        raise InvalidValueError(
            f"{field} has {len(value)} characters; give {min_length} to {max_length}"
        )
    try:
        return storable_text(value)
    except InvalidValueError as exc:
        raise InvalidValueError(f"{field} {exc}") from None


def check_money(field: str, value: Decimal) -> Decimal:
    """``value`` if it is an amount numeric(10, 2) stores exactly: 0 to MAX_MONEY, in cents."""
    if not value.is_finite() or not 0 <= value <= MAX_MONEY:
        raise InvalidValueError(f"{field} is {value}; give an amount from 0 to {MAX_MONEY}")
    if value != value.quantize(Decimal(1).scaleb(-MONEY_PLACES)):
        raise InvalidValueError(f"{field} is {value}; give at most {MONEY_PLACES} decimal places")
    return value


def check_id(field: str, value: int) -> int:
    """``value`` if it can be an id: 1 to MAX_ID."""
    if not 1 <= value <= MAX_ID:
        raise InvalidValueError(f"{field} is {value}; ids run from 1 to {MAX_ID}")
    return value


def email_key(email: str) -> str:
    """What makes two emails the same: equal up to case (Unicode case folding)."""
    return email.casefold()
