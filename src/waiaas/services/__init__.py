"""Application services: the imperative shell around the pure core (policy management, ...)."""
