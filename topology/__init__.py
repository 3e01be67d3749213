"""The topology: topic and store declarations, Faust agents, the local stack and the ``alpha`` CLI."""
