"""The notifier service.

Subscriptions, delivery log, timers (deadlines); e-mail and SMS from every context's
events.
"""
