"""The local stack: a real Kafka broker and schema registry on 127.0.0.1, started without Docker."""
