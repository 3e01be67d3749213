"""A minimal exactly-once Faust app, run as a worker process by test_faust_client.py.

It proves that Faust's client (aiokafka) speaks to our Kafka 4.x broker: consumer group,
transactional producer, offsets committed in the transaction (KIP-896 removed old protocols).
"""

import os

import faust

app = faust.App(
    os.environ["IT_APP_ID"],
    broker=f"kafka://{os.environ['IT_BOOTSTRAP']}",
    store="memory://",
    processing_guarantee="exactly_once",
    web_enabled=False,
    datadir=os.environ["IT_DATADIR"],
    topic_replication_factor=1,
)
source = app.topic(os.environ["IT_IN"], value_serializer="raw")
sink = app.topic(os.environ["IT_OUT"], value_serializer="raw")


@app.agent(source)
async def echo(stream):
    """Upper-case every value onto the sink topic."""
    async for value in stream:
        await sink.send(value=value.upper())


if __name__ == "__main__":
    app.main()
