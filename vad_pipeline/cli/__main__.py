"""`python -m vad_pipeline.cli` = the `vad` command."""

import sys

from vad_pipeline.cli import main

sys.exit(main())
