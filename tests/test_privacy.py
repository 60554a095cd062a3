"""common.privacy, the one masking module: what each redaction blanks and what it leaves."""

import pytest

from common.privacy import mask_digit_runs, mask_nik, mask_phone, mask_secrets, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("NIK 3171044203920001 failed", "NIK [redacted] failed"),
        ("call 081234567890 or +6281234567890", "call [redacted] or [redacted]"),
        ("6281234567890", "[redacted]"),
        (
            "masked 3171********0001 and 0812******90 pass",
            "masked 3171********0001 and 0812******90 pass",
        ),
        ("12345678 rows in 20250923 s", "12345678 rows in 20250923 s"),  # counts are not PII
        ("31710442039200011", "31710442039200011"),  # 17 digits: no NIK, no mobile
    ],
)
def test_log_text_loses_niks_and_mobiles_only(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("no patient 3171044203920001", "no patient ****************"),
        ("phone 0812-3456-7890 kept", "phone 0812-3456-7890 kept"),  # runs of 4: nothing to hide
        ("id 12345678, version 1234567", "id ********, version 1234567"),
    ],
)
def test_server_text_loses_every_long_digit_run(text: str, shown: str) -> None:
    assert mask_digit_runs(text) == shown


def test_secrets_are_masked_wherever_they_appear_and_empty_ones_are_ignored() -> None:
    text = "key k3y-1 refused; token tok.2 expired; key k3y-1 again"
    assert mask_secrets(text, ["k3y-1", None, "", "tok.2"]) == (
        "key *** refused; token *** expired; key *** again"
    )


def test_values_keep_enough_for_an_officer_to_recognise_them() -> None:
    assert mask_nik("3171044203920001") == "3171********0001"
    assert mask_phone("081234567890") == "0812******90"
