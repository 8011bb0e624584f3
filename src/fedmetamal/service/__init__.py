"""The service layer: runs, participants, tokens, events and model versions, persisted."""
