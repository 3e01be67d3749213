"""Pure kernels and stateful ``step`` functions, one sub-package per stage.

No Faust, no Kafka client, no network, no wall clock: see STYLE.md.
"""
