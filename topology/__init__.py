"""The topology: topic and store declarations, Faust agents, the local stack, the ``alpha`` CLI."""
