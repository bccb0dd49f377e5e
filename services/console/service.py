"""The console as a deployable, named like every service's (``services.<name>.service``):
the image's build checks it imports; ``python -m services.console`` serves it."""

from services.console.app import create_app, serve

__all__ = ["create_app", "serve"]
