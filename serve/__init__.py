"""Ray Serve deployments: model replicas (detector, embedder) and the FastAPI ingress.

Planned (issue 3 and the API issue); nothing here yet.
"""
