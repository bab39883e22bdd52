"""The clients of the services the launcher talks to: Google's APIs (credentials, Cloud Storage,
Secret Manager, Cloud Logging, Vertex AI Pipelines) and Unity Simulation's data transfers."""
