"""A training job: the ``Backend`` interface and ``TrainRequest`` (``training``), the backends
(Vertex AI, this machine, legacy ml v1), the job's checks, machines, capacity and price."""
