"""The contract layer: Avro schemas, wire format, record types, ids, time helpers, the root error.

Everything else imports from here; this package imports nothing of the project's.
"""
