"""The engine computes exactly the indicators the market messages carry, in their order."""

from apps.indicators.engine import FIELDS, IndicatorEngine
from apps.market.messages import INDICATOR_FIELDS


def test_the_engine_computes_every_field_of_the_contract_in_order():
    values = IndicatorEngine().update(["AAPL"], [189.5])
    assert tuple(values) == INDICATOR_FIELDS
    assert FIELDS == INDICATOR_FIELDS
