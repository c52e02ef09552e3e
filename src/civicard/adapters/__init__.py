"""Everything that touches the outside world: database, bulk engine, API, web pages, CLI."""
