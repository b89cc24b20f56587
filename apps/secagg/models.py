"""Secure-aggregation sessions: none yet; the app holds the place the protocol will fill."""
