"""`python -m anthra_keys_client …` is `anthra-token …`."""

import sys

from anthra_keys_client.cli import main

sys.exit(main())
