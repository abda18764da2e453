"""Test-side scoring: expected benchmark scores computed without VLMEvalKit."""
