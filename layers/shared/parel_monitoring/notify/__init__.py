"""Alert fan-out to Slack and Discord (the seed's alerting), owned by AlertsFunction."""
