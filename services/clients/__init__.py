"""The clients service.

Clients, client groups, projects, companies, contacts, equipment, messages to clients,
penalty points.
"""
