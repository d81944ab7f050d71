from perpnet.prover.service import main

raise SystemExit(main())
