"""The shared service runtime: what every perpnet service is built on, written once.

- config: typed settings from PERPNET_* environment variables, local defaults
- logging: JSON log lines
- grpc_server: the Service base and serve()/run_service(): health, reflection,
  metrics, readiness gate, graceful shutdown on SIGTERM
- channels: client channels to peers, and their health for ready()
- db, models, alembic/: SQLAlchemy engine and sessions, the tables, migrations
- redis: the client and Streams consumer-group work queues
- localproc: local helper processes (redis-server, services) for tests and devnet

Import from the submodules; this package imports nothing so that, say, the
config of a CLI does not pull in grpc.
"""
