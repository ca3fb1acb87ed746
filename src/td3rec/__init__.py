"""td3rec: distill sequential-recommendation datasets into tiny synthetic sequence summaries (TD3)."""

__version__ = "0.1.0"
