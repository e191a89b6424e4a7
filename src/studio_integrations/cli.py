"""studio-integrations: serve | migrate | seed-demo | token | export-schema | secret set |
documents register."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from studio_integrations.settings import Settings


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    import uvicorn

    from studio_integrations.app import REQUEST_GRACE_SHARE, WEBSOCKET_SERVER_OPTIONS, create_app
    from studio_integrations.log_config import configure_logging

    configure_logging(settings.log_level)
    base = f"http://{settings.host}:{settings.port}"
    if settings.graphiql_enabled:
        print(f"GraphiQL: {base}/graphql", file=sys.stderr)
    print(f"External Health dashboard: {base}/dashboard", file=sys.stderr)
    uvicorn.run(
        create_app(settings, freeze_gc=True),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the request middleware logs each request (with its trace)
        proxy_headers=True,
        **WEBSOCKET_SERVER_OPTIONS,
        timeout_graceful_shutdown=max(
            1, round(settings.shutdown_grace_seconds * REQUEST_GRACE_SHARE)
        ),
    )
    return 0


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from studio_integrations.persistence.db import Database
    from studio_integrations.persistence.migrations import upgrade
    from studio_integrations.seed.catalogue import load_catalogue

    upgrade(settings.database_url)
    print("database is at the latest schema", file=sys.stderr)

    async def load() -> str:
        db = Database(settings.database_url)
        try:
            return (await load_catalogue(db)).summary()
        finally:
            await db.dispose()

    print(asyncio.run(load()), file=sys.stderr)
    return 0


def _seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from studio_integrations.persistence.db import Database
    from studio_integrations.seed.demo import seed_demo

    async def run() -> list[str]:
        db = Database(settings.database_url)
        try:
            return await seed_demo(db, settings, tenant_id=args.tenant)
        finally:
            await db.dispose()

    for line in asyncio.run(run()):
        print(line, file=sys.stderr)
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from studio_integrations.auth.scopes import parse_scopes
    from studio_integrations.auth.tokens import mint_dev_token

    if settings.uses_jwks or settings.production:
        print(
            "error: tokens come from your identity provider when STUDIO_JWT_JWKS_URL is set"
            " (always in production)",
            file=sys.stderr,
        )
        return 2
    try:
        scopes = parse_scopes(args.scopes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        mint_dev_token(
            settings,
            tenant=args.tenant,
            subject=args.subject,
            scopes=scopes,
            name=args.name,
            ttl=timedelta(minutes=args.ttl_minutes),
        )
    )
    return 0


def _export_schema(_settings: Settings, _args: argparse.Namespace) -> int:
    from studio_integrations.schema.schema import schema

    sys.stdout.write(schema.as_str() + "\n")
    return 0


def _secret_set(settings: Settings, args: argparse.Namespace) -> int:
    from studio_integrations.core.errors import StudioError
    from studio_integrations.domain.credentials import TENANT_TAG
    from studio_integrations.persistence.db import Database
    from studio_integrations.vault.base import SecretRef
    from studio_integrations.vault.factory import make_secret_store

    value = sys.stdin.read()
    if value.endswith("\n"):
        value = value[:-1]  # `echo value | … secret set` should not store the newline
    if not value:
        print("error: no secret value on standard input", file=sys.stderr)
        return 2

    async def run() -> str:
        db = Database(settings.database_url)
        try:
            store = make_secret_store(settings, db)
            try:
                # The tag is what lets a tenant bind the secret (see domain.credentials).
                tags = {TENANT_TAG: args.tenant} if args.tenant else None
                props = await store.set_secret(
                    args.name, value, content_type=args.content_type, tags=tags
                )
                return f"{SecretRef(store.vault_url, props.name, props.version)}"
            finally:
                await store.close()
        finally:
            await db.dispose()

    try:
        ref = asyncio.run(run())
    except StudioError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    name, version = ref.rsplit("/", 1)
    print(f"reference: {name}\nversion: {version}\nid: {ref}\ntenant: {args.tenant or 'none'}")
    if not args.tenant:
        print(
            f"warning: {args.name} is not tagged with a tenant, so no tenant can use it: "
            "registerCredential answers SECRET_NOT_FOUND for it. Run again with --tenant T "
            f"(or tag the version {TENANT_TAG}=T in the vault).",
            file=sys.stderr,
        )
    return 0


def read_documents(path: Path) -> list[tuple[str, str | None]]:
    """``(body, name)`` documents of one build-output file: an Apollo persisted-query manifest
    (``{"format": "apollo-persisted-query-manifest", "operations": [{id, name, body}]}``), a
    ``{sha256: body}`` map (GraphQL Codegen's ``persisted-documents.json``), or a
    ``.graphql`` file (one document). Given hashes must match the text."""
    import json

    from studio_integrations.persistence.documents import document_hash

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".graphql", ".gql"}:
        return [(text, path.stem)]
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("operations"), list):
        entries = [(op.get("id"), op.get("body"), op.get("name")) for op in data["operations"]]
    elif isinstance(data, dict):
        entries = [(key, body, None) for key, body in data.items()]
    else:
        raise ValueError("expected a persisted-query manifest or a {sha256: document} map")
    documents: list[tuple[str, str | None]] = []
    for sha256, body, name in entries:
        if not isinstance(body, str):
            raise ValueError(f"{sha256}: the document body is not a string")
        if sha256 is not None and sha256 != document_hash(body):
            raise ValueError(f"{sha256}: the hash is not the SHA-256 of its document")
        documents.append((body, name if isinstance(name, str) else None))
    return documents


def _documents_register(settings: Settings, args: argparse.Namespace) -> int:
    from graphql import GraphQLError, parse

    from studio_integrations.persistence.db import Database
    from studio_integrations.persistence.documents import DocumentStore

    documents: list[tuple[str, str | None]] = []
    for name in args.files:
        try:
            found = read_documents(Path(name))
            for body, _ in found:
                parse(body, no_location=True)
        except (OSError, ValueError, GraphQLError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        documents.extend(found)

    async def run() -> int:
        db = Database(settings.database_url)
        try:
            return await DocumentStore(db).register(documents)
        finally:
            await db.dispose()

    new = asyncio.run(run())
    print(f"registered {len(documents)} documents ({new} new)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio-integrations", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="serve the API (GraphQL + GraphiQL on /graphql)").set_defaults(
        handler=_serve
    )
    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=_migrate)

    seed = sub.add_parser("seed-demo", help="load the global catalogue and demo data")
    seed.add_argument("--tenant", default="acme", help="tenant that owns the demo data")
    seed.set_defaults(handler=_seed_demo)

    token = sub.add_parser("token", help="mint a development token (embedded auth only)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--scopes", required=True, help="'all' or space-separated scope names")
    token.add_argument("--subject", required=True)
    token.add_argument("--name", default=None, help="display name")
    token.add_argument("--ttl-minutes", type=int, default=12 * 60)
    token.set_defaults(handler=_token)

    sub.add_parser("export-schema", help="print the GraphQL SDL").set_defaults(
        handler=_export_schema
    )

    secret = sub.add_parser("secret", help="put secrets into the configured store")
    secret_sub = secret.add_subparsers(dest="secret_command", required=True)
    secret_set = secret_sub.add_parser("set", help="new version of NAME, value from stdin")
    secret_set.add_argument("name")
    secret_set.add_argument("--content-type", default=None)
    secret_set.add_argument(
        "--tenant",
        default=None,
        help="the tenant that may bind the secret (tags the version studio-tenant=TENANT); "
        "without it no tenant can use the secret",
    )
    secret_set.set_defaults(handler=_secret_set)

    documents = sub.add_parser("documents", help="trusted GraphQL documents (APQ / allowlist)")
    documents_sub = documents.add_subparsers(dest="documents_command", required=True)
    register = documents_sub.add_parser(
        "register",
        help="register the Studio's build output: persisted-query manifests, "
        "{sha256: document} maps or .graphql files",
    )
    register.add_argument("files", nargs="+", metavar="FILE")
    register.set_defaults(handler=_documents_register)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            print(f"error: {where + ': ' if where else ''}{error['msg']}", file=sys.stderr)
        return 2
    handler = args.handler
    result: int = handler(settings, args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
