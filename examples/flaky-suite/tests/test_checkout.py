"""A small shop's tests: most are steady, a few are flaky the way real suites are."""

import pytest


def price_with_tax(cents, rate):
    return round(cents * (1 + rate))


def test_price_with_tax():
    assert price_with_tax(1000, 0.2) == 1200


@pytest.mark.parametrize("cents, rate, expected", [(100, 0.0, 100), (250, 0.1, 275), (999, 0.25, 1249)])
def test_price_table(cents, rate, expected):
    assert price_with_tax(cents, rate) == expected


def test_payment_gateway(attempt):
    # The sandbox gateway resets the first connection of the day.
    if attempt == 1:
        raise ConnectionResetError(104, "Connection reset by peer")


def test_inventory_sync(attempt):
    # A background sync that sometimes lands after the assertion.
    if attempt < 3:
        raise TimeoutError("inventory sync did not finish within 2.0s")


class TestCart:
    def test_add_item(self):
        cart = []
        cart.append("book")
        assert cart == ["book"]

    def test_session_cache(self, attempt):
        assert attempt > 1, "cache warmed by another test that ran in parallel"


@pytest.mark.skip(reason="the loyalty programme launches next quarter")
def test_loyalty_points():
    pass
