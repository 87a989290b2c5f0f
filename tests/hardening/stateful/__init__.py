"""Hypothesis state machines against dicomnet's Server and Client, and the helpers they share."""
