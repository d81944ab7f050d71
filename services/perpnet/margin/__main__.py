"""python -m perpnet.margin"""

from perpnet.margin.service import MarginEngine, MarginSettings
from perpnet.runtime.grpc_server import run_service

if __name__ == "__main__":
    raise SystemExit(run_service(MarginEngine, MarginSettings, "margin"))
