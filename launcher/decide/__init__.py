"""Judging and promoting a candidate: its scores, the paired bootstrap and the verdict against
production (``compare``), the production folder, the promotion, the leaderboard and the report."""
