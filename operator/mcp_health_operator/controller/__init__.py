"""The controller: the fleet of monitors, each a loop (probe → conclude → outbox),
remediation's side effects and the metrics they feed."""
