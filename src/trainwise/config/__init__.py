"""The run's config: schema, checks, and config-to-objects."""
