from perpnet.oracle.service import main

raise SystemExit(main())
