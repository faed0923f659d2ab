"""Execution engines for audits that outgrow one process's memory."""
