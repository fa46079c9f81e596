from flopgrad.cli import main

raise SystemExit(main())
