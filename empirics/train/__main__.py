from empirics.train.cli import main

raise SystemExit(main())
