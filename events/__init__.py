"""Event generation: Pythia8 + FastJet jet-tagging samples (events.jets) and their HDF5 schema (events.schema)."""
