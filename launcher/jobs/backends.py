"""The training backends by name: the interface (``launcher.jobs.training``) imports none of them."""
from launcher.errors import UsageError

BACKENDS = ("vertex", "local", "ml")


def backend(name, project, region="us-central1", api_endpoint=None, logging_endpoint=None):
    """The backend called ``name``: "vertex" (Vertex AI custom jobs), "local" (the same job on this
    machine) or "ml" (AI Platform Training, ml v1)."""
    if name == "vertex":
        from launcher.jobs.vertex import VertexBackend
        return VertexBackend(project, region, api_endpoint, logging_endpoint)
    if name == "local":
        from launcher.jobs.local import LocalBackend
        return LocalBackend(project, region, api_endpoint, logging_endpoint)
    if name == "ml":
        from launcher.jobs.aiplatform import MlBackend
        return MlBackend(project, region, api_endpoint, logging_endpoint)
    raise UsageError("--backend must be one of %s, got %s" % (", ".join(BACKENDS), name))
