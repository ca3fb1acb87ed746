"""Sub-commands of the td3rec CLI, one module each."""
