"""The identity service.

Staff accounts, credentials, sessions, individual rights, full access, IP policy; the
effective-permissions read model.
"""
