"""The downstream stage (spec 000 §17-18, spec 001, spec 003 §13, spec 004): the pure core.

``hrp`` (cluster budgets), ``cvar`` (tail-risk caps), ``risk`` (loss caps, streaks, hard stops,
kill switch), ``sizing`` (decisions), ``paper`` (the paper executor), ``exit_advisor`` (trade
management) and ``trader`` (the processor that runs them one sealed minute at a time on
``trade.in.v0``). Nothing here reads a clock, draws a random number or does I/O.
"""
