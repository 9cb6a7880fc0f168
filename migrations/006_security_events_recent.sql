-- The once-a-second reconciliation of status bits reads the last two minutes of revocations.
CREATE INDEX security_events_at ON security_events (at);
