"""python -m perpnet.matcher"""

from perpnet.matcher.service import Matcher, MatcherSettings
from perpnet.runtime.grpc_server import run_service

if __name__ == "__main__":
    raise SystemExit(run_service(Matcher, MatcherSettings, "matcher"))
