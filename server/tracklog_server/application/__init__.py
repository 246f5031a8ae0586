"""Application: one module per use case on runs, each taking a caller (who asks); the run-state
transitions live in one module. Transports call this layer; it calls the store."""
