"""Neural-network building blocks shared by models (no model imports this package's users)."""
