"""Telemetry transports, one module each: MQTT, HTTP, AMQP."""
