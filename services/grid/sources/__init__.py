"""Prices and outages from the services people use: hvakosterstrommen.no, ENTSO-E, EskomSePush.

Each adapter turns one service's answer into a :class:`hometwin.services.grid.tariffs.PriceSeries`
(prices) or outage intervals, fetching through :mod:`hometwin.fetch` (cache, offline mode,
respectful HTTP).  Nord Pool is not among them: its terms forbid automated retrieval and
redistribution of its data without an agreement (docs/data-sources.md).
"""
