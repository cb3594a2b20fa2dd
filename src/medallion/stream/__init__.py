"""The review stream: the event contract, the Kafka client and bundled broker, the producer
and the exactly-once consumer into the lake."""
