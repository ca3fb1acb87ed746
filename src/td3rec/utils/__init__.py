"""Small shared helpers: atomic file writes, seeding, device selection."""
