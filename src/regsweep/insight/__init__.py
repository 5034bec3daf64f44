"""Answers from a study: what it holds, the report, ablation, export and the dashboard."""
