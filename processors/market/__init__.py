"""Market context and universe (spec 002 §6, §7): the pure core of the market agent.

``kernels`` (RS, leader, dispersion, shock counts), ``context`` (one minute's snapshot fields),
``universe`` (the membership and hotlist state machine) and ``snapshot`` (the processor that
buffers ``market.in.v0`` until every lattice partition has sealed a minute).
"""
