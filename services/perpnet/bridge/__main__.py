from perpnet.bridge.service import main

raise SystemExit(main())
