"""Data contracts in practice: validation, the sample world, importers for real logs."""
