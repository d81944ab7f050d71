"""python -m perpnet.sequencer"""

from perpnet.runtime.grpc_server import run_service
from perpnet.sequencer.service import Sequencer
from perpnet.sequencer.settings import SequencerSettings

raise SystemExit(run_service(Sequencer, SequencerSettings, "sequencer"))
