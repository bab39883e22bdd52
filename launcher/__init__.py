"""Launch and follow Unity Simulation transfers and AI Platform training jobs."""
