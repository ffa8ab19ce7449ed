"""The PAN filter: what it masks, what it leaves, and that the app installs it process-wide."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from switch.vault.redaction import PanRedactingFilter, contains_pan, mask_pans


def test_masks_luhn_valid_numbers_with_or_without_separators_keeping_the_last_four():
    assert mask_pans("pan=4242424242424242;") == "pan=************4242;"
    assert mask_pans("4242 4242 4242 4242") == "**** **** **** 4242"
    assert mask_pans("3782-822463-10005") == "****-******-*0005"
    assert mask_pans("id 12 4242424242424242") == "id 12 ************4242"  # glued to other digits


def test_leaves_numbers_that_are_not_card_shaped():
    for text in ("amount 125000", "pay_018f3c2a9b1e4c", "123456789012", "2026-12-01 22:51:09,123"):
        assert mask_pans(text) == text, text


def test_refusal_check_is_stricter_than_log_masking():
    assert contains_pan("x 5555555555554444") and contains_pan("card 5555 5555 5555 4444")
    assert not contains_pan("order 1234")
    assert not contains_pan("order 4242424242424241")  # not Luhn-valid as a whole: an order number
    assert mask_pans("order 4242424242424241") != "order 4242424242424241"  # a log line errs towards masking


def test_filter_masks_message_arguments_extras_and_exceptions():
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "card %s n=%d", ("4242424242424242", 7), None)
    record.card = "5555555555554444"
    try:
        raise RuntimeError("declined 378282246310005")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert PanRedactingFilter().filter(record)
    assert record.getMessage() == "card ************4242 n=7"
    assert record.card == "************4444"
    assert "378282246310005" not in logging.Formatter().format(record)
    assert "378282246310005" not in str(record.exc_info[1])


def test_a_record_without_card_numbers_keeps_its_arguments():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s paid %d", ("pay_1", 1250), None)
    PanRedactingFilter().filter(record)
    assert record.args == ("pay_1", 1250) and record.msg == "%s paid %d"


def test_the_app_factory_installs_the_filter_for_every_logger():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update({"SWITCH_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "SWITCH_LOG_FORMAT": "json",
                "SWITCH_VAULT_MASTER_KEY": "00" * 32})  # fmt: skip
    code = (
        "import logging\n"
        "from switch.app import create_app_from_env\n"
        "create_app_from_env()\n"
        "logging.getLogger('any.library').warning('charging 4242424242424242')\n"
        "logging.getLogger('switch.x').error('failed', exc_info=ValueError('card 5555555555554444'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "charging ************4242" in output
    assert "4242424242424242" not in output and "5555555555554444" not in output
