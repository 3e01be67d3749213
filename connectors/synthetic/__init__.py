"""Seeded synthetic perp market data with named injected scenarios (spec 002 §18.6).

:func:`connectors.synthetic.generator.generate` yields ``md.raw.v0`` values; the scenarios are in
:mod:`connectors.synthetic.scenarios`; ``docs/synthetic.md`` lists them.
"""
