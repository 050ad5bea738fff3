from empirics.train.loop import main

raise SystemExit(main())
