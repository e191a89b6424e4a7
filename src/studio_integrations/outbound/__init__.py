"""Everything that leaves the host: the provider HTTP client, the egress policy (SSRF guard,
timeouts, size caps, redaction) and Standard Webhooks signing. Imports core/ and vault/
only; domain actions and workers call it."""
