"""The command line by group: training jobs, the pipeline, Unity Simulation transfers. Each
command is a thin click shell over the functions of the other packages."""
