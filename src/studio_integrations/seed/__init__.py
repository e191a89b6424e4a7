"""Data the service is seeded with: the global provider catalogue, the demo tenant and the
in-app sandbox provider its demo connections call. Run by the CLI (``migrate``,
``seed-demo``) and, for the sandbox, mounted by the app when ``STUDIO_DEMO_SANDBOX`` is on."""
