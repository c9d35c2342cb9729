"""The one rule for identifiers: customer, merchant and transaction ids, at every entry point.

Ids are taken as they come from the card network or the acquirer, so real merchant names such
as ``fraud_Kirlin and Sons`` or ``fraud_Bins-Howell, Ltd.`` are valid ids: any printable
Unicode text (letters with accents, spaces, punctuation, apostrophes), 1 to
:data:`ID_MAX_LENGTH` characters, not blank. Rejected are control characters (C0, DEL, C1:
tabs, newlines, NUL...), which corrupt logs and CSV files, and lone UTF-16 surrogates, which
cannot be encoded as UTF-8 and so could not become a Redis key or a Parquet value.

The importer, the generator, the raw-table validation and the API all use this module, so an id
accepted anywhere is accepted everywhere, and round-trips unchanged through Parquet and
Feast's Redis keys (both store UTF-8).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

ID_MAX_LENGTH = 128
ID_PATTERN = rf"^(?=.*\S)[^\x00-\x1f\x7f-\x9f\ud800-\udfff]{{1,{ID_MAX_LENGTH}}}$"
# The same rule as a plain character class, for the API's JSON schema: OpenAPI tools (and
# schemathesis) cannot use a lookahead or surrogate escapes. The validator enforces the rest.
ID_SCHEMA_PATTERN = rf"^[^\x00-\x1f\x7f-\x9f]{{1,{ID_MAX_LENGTH}}}$"
ID_RULE = (
    f"must be 1-{ID_MAX_LENGTH} printable characters (spaces and punctuation allowed; "
    "no control characters; not blank)"
)
_ID_REGEX = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is a string that satisfies the id rule."""
    return isinstance(value, str) and _ID_REGEX.match(value) is not None


def check_id(value: str) -> str:
    """Return ``value`` unchanged if it is a valid id (a Pydantic ``AfterValidator``).

    Raises:
        ValueError: With :data:`ID_RULE` as the message.
    """
    if not is_valid_id(value):
        raise ValueError(ID_RULE)
    return value


def invalid_id_mask(values: pd.Series) -> np.ndarray:
    """True at each non-null value of ``values`` that breaks the id rule.

    Checks each distinct value once (a million rows have a few thousand distinct ids).
    """
    present = values.notna().to_numpy()
    distinct = pd.unique(values[present])
    bad = {value for value in distinct if not is_valid_id(value)}
    if not bad:
        return np.zeros(len(values), dtype=bool)
    return values.isin(bad).to_numpy() & present
