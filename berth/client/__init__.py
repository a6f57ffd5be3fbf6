"""berth.client: the engine API client (stdlib + berth.errors only; the CLI imports it lazily)."""
