"""Moves a Unity Simulation run into your bucket, trains the detector on it (Vertex AI, this machine,
or legacy AI Platform), and runs, judges and promotes it end to end.

    launcher/cloud/      the Google and Unity Simulation clients
    launcher/jobs/       a training job: the request, its checks and price, and its backends
    launcher/pipeline/   the Kubeflow pipeline and its steps, each safe to run again
    launcher/decide/     judging a candidate against production, promoting it, the leaderboard
    launcher/commands/   the command line (``python -m launcher``), by group, over the above
"""
