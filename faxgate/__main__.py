from faxgate.cli import main

raise SystemExit(main())
