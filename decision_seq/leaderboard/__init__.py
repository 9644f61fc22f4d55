"""Leaderboard: tables with confidence intervals, and plots, from the results.json of training runs.

Where things live (the command line is decision_seq.cli.leaderboard):
- runs:      the `Run` record; reading results.json files and W&B runs
- grouping:  rows by (dataset, model), split by protocol; per-row and per-model statistics
- stats:     bootstrap CIs, IQM, stratified bootstrap (rliable's methods in numpy)
- published: published D4RL scores and their sources (published.csv; docs/published.md)
- render:    terminal tables, leaderboard.md, leaderboard.csv, runs.csv; writes every output
- plots:     scores.png and curves.png
- html:      the static site of --html (index.html, leaderboard.json, assets copied from site/)
"""
