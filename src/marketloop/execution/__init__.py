"""The execution layer: real-time decisions, triggers, channels and a durable outbox."""
