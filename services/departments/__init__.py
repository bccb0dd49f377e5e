"""The departments service.

Departments, department rights, work schedules (business hours, time zone, holidays).
"""
