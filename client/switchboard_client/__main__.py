"""python -m switchboard_client: the `switchboard` command."""

import sys

from switchboard_client.cli import main

sys.exit(main())
