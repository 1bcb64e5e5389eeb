from aladdin_cli.main import main

raise SystemExit(main())
