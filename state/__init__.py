"""State stores: one ``KeyValueStore`` protocol, memory and rocksdict backends, versioned codecs."""
