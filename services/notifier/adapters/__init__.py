"""The notifier's ways out: SMTP, the SMS gateway, the clients service's internal API."""
