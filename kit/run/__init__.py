"""A run: its skeleton (directory, record, STT service, sampler, interruption), console runs, the job side, the event log."""
