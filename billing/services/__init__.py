"""Billing writes, split by concern: balances.py / topups.py (ingestion of balances and top-ups),
budgets.py / alerts.py (budget evaluation and notifications)."""
