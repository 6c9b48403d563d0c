"""DDP: the launcher and the collective operations."""
