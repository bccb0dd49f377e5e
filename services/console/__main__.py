"""`python -m services.console`: serve the console (CONSOLE_PORT, default 8000)."""

from services.console.app import serve

serve()
