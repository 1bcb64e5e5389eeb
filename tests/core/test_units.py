from decimal import Decimal

import pytest

from aladdin.lib.units import dcu_to_micro, fen_to_yuan_str, format_micro


@pytest.mark.parametrize(
    ("dcu", "micro"),
    [
        ("56.6", 56_600_000),
        (Decimal("56.6"), 56_600_000),
        ("0.0015", 1_500),
        ("0.000001", 1),
        ("20", 20_000_000),
        (10, 10_000_000),
        ("-0.5", -500_000),
    ],
)
def test_dcu_converts_to_micro_dcu_exactly(dcu, micro):
    assert dcu_to_micro(dcu) == micro


@pytest.mark.parametrize("dcu", ["0.0000001", Decimal("1.0000005")])
def test_precision_finer_than_one_micro_dcu_is_refused(dcu):
    with pytest.raises(ValueError):
        dcu_to_micro(dcu)


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity"])
def test_something_that_is_not_an_amount_is_refused(bad):
    with pytest.raises(ValueError):
        dcu_to_micro(bad)


def test_floats_are_refused():
    with pytest.raises(TypeError):
        dcu_to_micro(0.1)


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (56_600_000, "56.6"),
        (30_000, "0.03"),
        (1_500, "0.0015"),
        (1, "0.000001"),
        (20_000_000, "20"),
        (0, "0"),
        (-2_500_000, "-2.5"),
    ],
)
def test_micro_dcu_formats_without_trailing_zeros(micro, text):
    assert format_micro(micro) == text


@pytest.mark.parametrize(
    ("fen", "text"),
    [(13_500, "135.00"), (6_750, "67.50"), (5, "0.05"), (0, "0.00"), (-150, "-1.50")],
)
def test_fen_formats_as_yuan_with_two_decimals(fen, text):
    assert fen_to_yuan_str(fen) == text
