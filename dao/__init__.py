"""State kept by the bus: SQLAlchemy models, the engine, migrations and repositories."""
