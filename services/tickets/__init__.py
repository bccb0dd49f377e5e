"""The tickets service.

Tickets, categories, response templates, announcements, support settings, paid-request
balance; queues and reports.
"""
