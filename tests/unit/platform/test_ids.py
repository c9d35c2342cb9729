"""The one id rule (fraud_platform.ids), shared by the importer, the generator and the API."""

from __future__ import annotations

import pandas as pd
import pytest

from fraud_platform.ids import ID_MAX_LENGTH, check_id, invalid_id_mask, is_valid_id

VALID = [
    "fraud_Kirlin and Sons",
    "fraud_Bins-Howell, Ltd.",
    "fraud_O'Keefe-Schmitt",
    "Café de l'Opéra",
    "店铺 № 12",
    "<script>",  # markup is data, not code: it is never rendered
    "x" * ID_MAX_LENGTH,
    " leading space kept",
]
INVALID = [
    "",
    "   ",
    "x" * (ID_MAX_LENGTH + 1),
    "tab\there",
    "line\nbreak",
    "nul\x00",
    "del\x7f",
    "c1\x85control",
    "lone\ud800surrogate",
]


@pytest.mark.parametrize("value", VALID)
def test_printable_ids_with_spaces_and_punctuation_are_valid(value: str) -> None:
    assert is_valid_id(value)
    assert check_id(value) == value


@pytest.mark.parametrize("value", INVALID)
def test_control_blank_overlong_and_unencodable_ids_are_rejected(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(ValueError, match="printable"):
        check_id(value)


def test_non_strings_are_not_ids() -> None:
    assert not is_valid_id(12345)
    assert not is_valid_id(None)


def test_mask_flags_exactly_the_bad_rows_and_skips_nulls() -> None:
    values = pd.Series(["ok id", "bad\tid", None, "ok id", ""], dtype=object)
    assert invalid_id_mask(values).tolist() == [False, True, False, False, True]
