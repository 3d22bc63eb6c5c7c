"""Getting data off the device: spool, outbox, MQTT transport, Home Assistant."""
