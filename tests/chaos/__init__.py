"""The chaos suite: testnet sessions against the local exchange under injected faults, checked
against the exchange's own records (run alone: ``pytest tests/chaos``)."""
