"""`perpnet devnet`: the whole testnet as local processes, without containers.

`up` starts a private redis-server (append-only file on) and anvil (1 s
blocks), deploys the contracts, writes one environment for every service
(`<dir>/devnet.env`: the same PERPNET_* variables the containers read) and
starts each service as `python -m perpnet.<service>` in its own process
group, logging to `<dir>/logs/`. What it started is recorded in
`<dir>/devnet.json`, so `status` and `down` work from another shell, and
`up` refuses to start twice.
"""
