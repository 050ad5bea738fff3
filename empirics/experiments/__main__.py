from empirics.experiments.pipeline import main

raise SystemExit(main())
