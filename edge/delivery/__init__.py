"""Getting data off the device: spool, outbox (pure state machine), MQTT transport, schedules,
the Publisher that composes them, Home Assistant discovery."""
