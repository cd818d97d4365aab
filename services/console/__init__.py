"""The web console at ``/console/`` (services/console/app.py): the bus for the people who run it."""
from services.console.app import SECRET_ENV, Console

__all__ = ["Console", "SECRET_ENV"]
