"""SQLAlchemy tables, unit of work, repositories, the personal-data guard and migrations."""
