from kfaas.cli import main

raise SystemExit(main())
