"""Leaderboard: read results.json files, group runs by dataset x model, statistics, published numbers, tables and plots."""
