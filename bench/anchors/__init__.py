"""Reference apps bench/api.py serves beside MarketFlux's API, in the same run."""
