"""The edges of the topology: exchange and replay sources, the schema registry, sinks."""
